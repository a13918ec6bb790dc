/* SPDX-License-Identifier: Apache-2.0 */
/* IPv4 header validation. */
#ifndef FN_LIB_IPV4_H
#define FN_LIB_IPV4_H

#include "common.h"

/*
 * Returns the header if it is a well-formed IPv4 header that lies in the linear data and
 * whose total length fits the frame, else NULL. The total length is checked against
 * skb->len, not data_end: locally generated segments carry their payload in page frags.
 */
FN_INLINE struct iphdr *fn_ipv4_header(struct __sk_buff *skb, void *l3, void *data_end)
{
	struct iphdr *ip = l3;
	__u32 hlen, tot_len;

	if ((void *)(ip + 1) > data_end)
		return NULL;
	if (ip->version != 4 || ip->ihl < 5)
		return NULL;
	hlen = ip->ihl * 4;
	if (l3 + hlen > data_end)
		return NULL;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < hlen || tot_len > skb->len - ETH_HLEN)
		return NULL;
	return ip;
}

#endif
