# Trimmed x86_64-softmmu device set for the net/virtio-net/ivshmem series.
# Installed as configs/devices/x86_64-softmmu/series-test.mak and selected
# with --without-default-devices --with-devices-x86_64=series-test.
# Everything the series' tests use, and little else.

# Machines: pc (i440fx) and q35.
CONFIG_I440FX=y
CONFIG_Q35=y
CONFIG_ISAPC=n
CONFIG_MICROVM=n

# Console and display the tests rely on.
CONFIG_SERIAL_ISA=y
CONFIG_VGA_PCI=y

# Networking.
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y
CONFIG_E1000_PCI=y
CONFIG_E1000E_PCI_EXPRESS=y

# PCI topology for failover and hotplug.
CONFIG_PCIE_PORT=y
CONFIG_PCI_BRIDGE=y
CONFIG_PCIE_PCI_BRIDGE=y

# ACPI_X86 selects ACPI_CXL, whose code calls into hw/cxl, which calls
# into the CXL type 3 device; all three are only "default y" (CXL also
# needs PXB), which --without-default-devices drops: the link fails
# without them.
CONFIG_PXB=y
CONFIG_CXL=y
CONFIG_CXL_MEM_DEVICE=y

# Shared memory.
CONFIG_IVSHMEM_DEVICE=y
