/* SPDX-License-Identifier: Apache-2.0 */
/* IPv4 header validation. */
#ifndef FN_LIB_IPV4_H
#define FN_LIB_IPV4_H

#include "common.h"
#include "helpers.h"

/* Ethernet, the longest IPv4 header, and a TCP header without options: every header byte the
 * programs read with direct packet access (the rest, e.g. an ICMP error's quote, goes
 * through bpf_skb_load_bytes). */
#define FN_HEADERS_MAX (ETH_HLEN + 60 + 20)

/*
 * Makes those headers linear. A NIC (or a GRO'd packet) may leave no more than the Ethernet
 * header in the skb's linear part, where direct packet access ends: without the pull every
 * such packet would look truncated. A no-op when they already are (every packet a local
 * stack made). Call before taking any packet pointer: the pull invalidates them.
 */
FN_INLINE void fn_pull_headers(struct __sk_buff *skb)
{
	__u32 want = skb->len < FN_HEADERS_MAX ? skb->len : FN_HEADERS_MAX;

	if (fn_linear_len(skb) < want)
		fn_pull_data(skb, want);
}

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
