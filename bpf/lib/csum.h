/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Header rewrites with incremental checksum updates. The helpers handle a checksum that is
 * still CHECKSUM_PARTIAL (a locally generated packet on veth carries only the pseudo-header
 * seed): BPF_F_PSEUDO_HDR updates the seed for address changes, port changes then leave it.
 */
#ifndef FN_LIB_CSUM_H
#define FN_LIB_CSUM_H

#include "common.h"

#define FN_IP_CSUM_OFF  (ETH_HLEN + offsetof(struct iphdr, check))
#define FN_IP_SADDR_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define FN_IP_DADDR_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

/* Rewrites an IPv4 address at addr_off (of the outer header), its header checksum and, when
 * l4_csum_off is not 0, the transport checksum whose pseudo-header includes it. */
FN_INLINE int fn_rewrite_addr(struct __sk_buff *skb, __u32 addr_off, __be32 old, __be32 new,
			      __u32 l4_csum_off, __u32 l4_flags)
{
	if (old == new)
		return 0;
	if (l4_csum_off && bpf_l4_csum_replace(skb, l4_csum_off, old, new, l4_flags | sizeof(new) | BPF_F_PSEUDO_HDR))
		return -1;
	if (bpf_l3_csum_replace(skb, FN_IP_CSUM_OFF, old, new, sizeof(new)))
		return -1;
	return bpf_skb_store_bytes(skb, addr_off, &new, sizeof(new), 0);
}

/* Rewrites a 16-bit transport field (port, ICMP identifier) and the L4 checksum. */
FN_INLINE int fn_rewrite_port(struct __sk_buff *skb, __u32 port_off, __be16 old, __be16 new,
			      __u32 l4_csum_off, __u32 l4_flags)
{
	if (old == new)
		return 0;
	if (l4_csum_off && bpf_l4_csum_replace(skb, l4_csum_off, old, new, l4_flags | sizeof(new)))
		return -1;
	return bpf_skb_store_bytes(skb, port_off, &new, sizeof(new), 0);
}

/* A router's TTL decrement. Returns -1 when the packet must not be forwarded (TTL <= 1). */
FN_INLINE int fn_ttl_decrement(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__be16 old, new;

	if ((void *)(ip + 1) > data_end || ip->ttl <= 1)
		return -1;
	old = *(__be16 *)&ip->ttl; /* ttl and protocol share one checksummed word */
	ip->ttl--;
	new = *(__be16 *)&ip->ttl;
	return bpf_l3_csum_replace(skb, FN_IP_CSUM_OFF, old, new, sizeof(new));
}

#endif
