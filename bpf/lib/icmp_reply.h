/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's own ICMP errors. A packet the gateway cannot route on is turned, in place,
 * into the error a router sends back (RFC 792/1812): new IP and ICMP headers, then the
 * packet's IP header and first 8 bytes of payload, sent back out the port it came in on.
 * Time exceeded answers traceroute's first hop without the host routing anything;
 * destination unreachable answers a destination the host has no route to.
 */
#ifndef FN_LIB_ICMP_REPLY_H
#define FN_LIB_ICMP_REPLY_H

#include <uapi/linux/icmp.h>

#include "common.h"
#include "eth.h"
#include "helpers.h"

#define FN_ICMP_QUOTE_MAX (60 + 8) /* the longest IPv4 header and 8 bytes of its payload */

struct fn_icmp_error_head {
	struct iphdr ip;
	struct icmphdr icmp;
	__u8 quote[FN_ICMP_QUOTE_MAX];
};

FN_INLINE __u16 fn_csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* Rewrites the packet into the ICMP error (type, code; `mtu` for fragmentation needed) from
 * `from` to its sender; the caller sends it back out with fn_redirect_egress(). 0, or a
 * negative drop reason. */
FN_INLINE int fn_icmp_reply(struct __sk_buff *skb, __be32 from, __u8 type, __u8 code, __u16 mtu)
{
	struct fn_icmp_error_head h = {};
	struct ethhdr eth;
	__u32 qlen, ihl;
	__s64 sum;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) || bpf_skb_load_bytes(skb, ETH_HLEN, &h.quote, 20))
		return -FN_DROP_MALFORMED_IP;
	ihl = (h.quote[0] & 0xf) * 4;
	if (ihl < 20)
		return -FN_DROP_MALFORMED_IP;
	qlen = ihl + 8; /* 28..68: the verifier follows these bounds into the sizes below */
	if (qlen > skb->len - ETH_HLEN)
		return -FN_DROP_MALFORMED_IP;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &h.quote, qlen))
		return -FN_DROP_MALFORMED_IP;

	h.icmp.type = type;
	h.icmp.code = code;
	h.icmp.un.frag.mtu = bpf_htons(mtu);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.icmp, sizeof(h.icmp) + qlen, 0);
	if (sum < 0)
		return -FN_DROP_CSUM;
	h.icmp.checksum = fn_csum_fold(sum);

	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tot_len = bpf_htons(sizeof(h.ip) + sizeof(h.icmp) + qlen);
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_ICMP;
	h.ip.saddr = from;
	__builtin_memcpy(&h.ip.daddr, &h.quote[12], 4); /* the expired packet's source */
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.ip, sizeof(h.ip), 0);
	if (sum < 0)
		return -FN_DROP_CSUM;
	h.ip.check = fn_csum_fold(sum);

	{
		__u8 mac[6];

		fn_mac_copy(mac, eth.h_dest);
		fn_mac_copy(eth.h_dest, eth.h_source);
		fn_mac_copy(eth.h_source, mac);
	}
	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(h.ip) + sizeof(h.icmp) + qlen, 0) ||
	    bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h.ip) + sizeof(h.icmp) + qlen, 0))
		return -FN_DROP_CSUM;
	return 0;
}

#endif
