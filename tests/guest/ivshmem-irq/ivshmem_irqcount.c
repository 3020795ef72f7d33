// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * ivshmem_irqcount: a test-only guest driver for ivshmem devices with
 * MSI-X (ivshmem-doorbell, legacy ivshmem with chardev and msi=on).
 *
 * It enables every MSI-X vector of the device and counts interrupts per
 * vector.  The counts are in /sys/bus/pci/devices/<bdf>/irq_counts (one
 * number per vector) and in /proc/interrupts ("ivshmem-<bdf>-<vector>").
 * Devices without MSI-X (ivshmem-plain) are left alone.
 *
 * The driver does not claim the BARs, so a test can read IVPosition and
 * ring doorbells through /dev/mem (busybox devmem) even with
 * CONFIG_IO_STRICT_DEVMEM.  Built by tests/guest/build-ivshmem-irq.sh.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/interrupt.h>

struct ivshmem_irqcount {
    int nvec;
    atomic_t *counts;
    char (*names)[40];
};

static irqreturn_t ivshmem_irqcount_handler(int irq, void *opaque)
{
    atomic_inc((atomic_t *)opaque);
    return IRQ_HANDLED;
}

static ssize_t irq_counts_show(struct device *dev,
                               struct device_attribute *attr, char *buf)
{
    struct ivshmem_irqcount *ic = dev_get_drvdata(dev);
    int i, n = 0;

    for (i = 0; i < ic->nvec; i++) {
        n += sysfs_emit_at(buf, n, "%s%d", i ? " " : "",
                           atomic_read(&ic->counts[i]));
    }
    n += sysfs_emit_at(buf, n, "\n");
    return n;
}
static DEVICE_ATTR_RO(irq_counts);

static int ivshmem_irqcount_probe(struct pci_dev *pdev,
                                  const struct pci_device_id *id)
{
    struct ivshmem_irqcount *ic;
    int i, ret, nvec;

    if (!pdev->msix_cap) {
        return -ENODEV;
    }
    ret = pcim_enable_device(pdev);
    if (ret) {
        return ret;
    }
    pci_set_master(pdev);

    nvec = pci_msix_vec_count(pdev);
    if (nvec <= 0) {
        return -ENODEV;
    }
    ic = devm_kzalloc(&pdev->dev, sizeof(*ic), GFP_KERNEL);
    if (!ic) {
        return -ENOMEM;
    }
    ic->counts = devm_kcalloc(&pdev->dev, nvec, sizeof(*ic->counts),
                              GFP_KERNEL);
    ic->names = devm_kcalloc(&pdev->dev, nvec, sizeof(*ic->names),
                             GFP_KERNEL);
    if (!ic->counts || !ic->names) {
        return -ENOMEM;
    }
    ret = pci_alloc_irq_vectors(pdev, nvec, nvec, PCI_IRQ_MSIX);
    if (ret < 0) {
        return ret;
    }
    ic->nvec = nvec;
    for (i = 0; i < nvec; i++) {
        snprintf(ic->names[i], sizeof(ic->names[i]), "ivshmem-%s-%d",
                 pci_name(pdev), i);
        ret = devm_request_irq(&pdev->dev, pci_irq_vector(pdev, i),
                               ivshmem_irqcount_handler, 0, ic->names[i],
                               &ic->counts[i]);
        if (ret) {
            return ret;
        }
    }
    pci_set_drvdata(pdev, ic);
    ret = device_create_file(&pdev->dev, &dev_attr_irq_counts);
    if (ret) {
        return ret;
    }
    dev_info(&pdev->dev, "counting interrupts on %d MSI-X vectors\n", nvec);
    return 0;
}

static void ivshmem_irqcount_remove(struct pci_dev *pdev)
{
    device_remove_file(&pdev->dev, &dev_attr_irq_counts);
}

static const struct pci_device_id ivshmem_irqcount_ids[] = {
    { PCI_DEVICE(0x1af4, 0x1110) },
    { }
};
MODULE_DEVICE_TABLE(pci, ivshmem_irqcount_ids);

static struct pci_driver ivshmem_irqcount_driver = {
    .name = "ivshmem_irqcount",
    .id_table = ivshmem_irqcount_ids,
    .probe = ivshmem_irqcount_probe,
    .remove = ivshmem_irqcount_remove,
};
module_pci_driver(ivshmem_irqcount_driver);

MODULE_DESCRIPTION("Count MSI-X interrupts of ivshmem devices (test only)");
MODULE_LICENSE("GPL");
