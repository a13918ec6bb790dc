/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map declarations: the only bcc-specific declarations of the datapath. Layouts are in
 * fastnet/abi.h; datapath/maps.py names the same maps. Kernel object names are at most
 * 15 characters.
 *
 * bcc rewrites map method calls only when they are spelled in the main source file, so the
 * accessors over these maps live in the "map accessors" section of fastnet.c, and the
 * logic headers in lib/ call those accessors.
 */
#ifndef FN_LIB_MAPS_H
#define FN_LIB_MAPS_H

BPF_TABLE("hash", __u32, struct fn_endpoint, fn_endpoints, FN_MAX_ENDPOINTS);
BPF_TABLE("hash", __u32, struct fn_network, fn_networks, FN_MAX_NETWORKS);
BPF_TABLE("hash", struct fn_fdb_key, struct fn_fdb_entry, fn_fdb,
	  FN_MAX_ENDPOINTS + FN_MAX_NETWORKS);
BPF_TABLE("hash", __be32, struct fn_ip_entry, fn_ipcache, FN_MAX_ENDPOINTS);
BPF_TABLE("hash", struct fn_flood_key, __u32, fn_flood, FN_MAX_ENDPOINTS);
BPF_TABLE("percpu_array", __u32, struct fn_metric, fn_metrics,
	  FN_PROG_MAX * FN_COUNTER_SLOTS);
#ifdef FN_TEST
BPF_TABLE("array", __u32, struct fn_test_redirects, fn_test_redir, 1);
#endif

#endif
