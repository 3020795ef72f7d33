/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * rsstool: the few ethtool operations the RSS test needs, for the test
 * guest (a busybox initramfs without ethtool).  Built static on the host
 * by tests/guest/build-rsstool.sh.
 *
 *   rsstool channels IFACE N     use N combined queue pairs (ethtool -L)
 *   rsstool indir IFACE Q        steer every hash to queue Q (ethtool -X)
 *   rsstool rxq IFACE            packets received per queue, one line:
 *                                "rxq N0 N1 ..." (from ethtool -S)
 */
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int sock = -1;
static const char *iface;

static int ethtool(void *cmd)
{
    struct ifreq ifr;

    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", iface);
    ifr.ifr_data = cmd;
    return ioctl(sock, SIOCETHTOOL, &ifr);
}

static void die(const char *what)
{
    fprintf(stderr, "rsstool: %s on %s: %s\n", what, iface, strerror(errno));
    exit(1);
}

static void channels(unsigned n)
{
    struct ethtool_channels ch = { .cmd = ETHTOOL_GCHANNELS };

    if (ethtool(&ch)) {
        die("ETHTOOL_GCHANNELS");
    }
    ch.cmd = ETHTOOL_SCHANNELS;
    ch.combined_count = n;
    if (ethtool(&ch)) {
        die("ETHTOOL_SCHANNELS");
    }
}

static void indir(unsigned queue)
{
    struct ethtool_rxfh get = { .cmd = ETHTOOL_GRSSH };
    struct ethtool_rxfh *set;
    unsigned i;

    if (ethtool(&get)) {
        die("ETHTOOL_GRSSH");
    }
    set = calloc(1, sizeof(*set) + get.indir_size * sizeof(set->rss_config[0]));
    if (!set) {
        die("calloc");
    }
    set->cmd = ETHTOOL_SRSSH;
    set->indir_size = get.indir_size;
    /* key_size 0: keep the key; hfunc 0: keep the hash function */
    for (i = 0; i < get.indir_size; i++) {
        set->rss_config[i] = queue;
    }
    if (ethtool(set)) {
        die("ETHTOOL_SRSSH");
    }
    free(set);
}

static void rxq(void)
{
    struct ethtool_sset_info *info;
    struct ethtool_gstrings *strings;
    struct ethtool_stats *stats;
    unsigned n, i, q;

    info = calloc(1, sizeof(*info) + sizeof(info->data[0]));
    info->cmd = ETHTOOL_GSSET_INFO;
    info->sset_mask = 1ULL << ETH_SS_STATS;
    if (ethtool(info)) {
        die("ETHTOOL_GSSET_INFO");
    }
    n = info->data[0];
    strings = calloc(1, sizeof(*strings) + n * ETH_GSTRING_LEN);
    stats = calloc(1, sizeof(*stats) + n * sizeof(stats->data[0]));
    if (!strings || !stats) {
        die("calloc");
    }
    strings->cmd = ETHTOOL_GSTRINGS;
    strings->string_set = ETH_SS_STATS;
    strings->len = n;
    stats->cmd = ETHTOOL_GSTATS;
    stats->n_stats = n;
    if (ethtool(strings)) {
        die("ETHTOOL_GSTRINGS");
    }
    if (ethtool(stats)) {
        die("ETHTOOL_GSTATS");
    }
    printf("rxq");
    for (q = 0;; q++) {
        char name[ETH_GSTRING_LEN];
        int found = 0;

        snprintf(name, sizeof(name), "rx_queue_%u_packets", q);
        for (i = 0; i < n; i++) {
            if (!strncmp((char *)strings->data + i * ETH_GSTRING_LEN, name,
                         ETH_GSTRING_LEN)) {
                printf(" %llu", (unsigned long long)stats->data[i]);
                found = 1;
                break;
            }
        }
        if (!found) {
            break;
        }
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rsstool channels|indir|rxq IFACE [N]\n");
        return 2;
    }
    iface = argv[2];
    sock = socket(AF_INET, SOCK_DGRAM, 0);
    if (sock < 0) {
        die("socket");
    }
    if (!strcmp(argv[1], "channels") && argc == 4) {
        channels(strtoul(argv[3], NULL, 0));
    } else if (!strcmp(argv[1], "indir") && argc == 4) {
        indir(strtoul(argv[3], NULL, 0));
    } else if (!strcmp(argv[1], "rxq")) {
        rxq();
    } else {
        fprintf(stderr, "rsstool: unknown command %s\n", argv[1]);
        return 2;
    }
    return 0;
}
