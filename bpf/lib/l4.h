/* SPDX-License-Identifier: Apache-2.0 */
/* The transport view of an IPv4 packet: the tuple conntrack keys on, and where things are. */
#ifndef FN_LIB_L4_H
#define FN_LIB_L4_H

#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/icmp.h>

#include "common.h"

#define FN_IP_MF     0x2000
#define FN_IP_OFFSET 0x1FFF

#define FN_TCP_FIN 0x01
#define FN_TCP_SYN 0x02
#define FN_TCP_RST 0x04
#define FN_TCP_ACK 0x10

/* Offsets are from skb->data: packet pointers do not survive the rewrite helpers. */
struct fn_l4 {
	struct fn_ct_key key;  /* the tuple as the packet arrives (ICMP echo: see fn_l4_parse) */
	__u32 l3_end;          /* where the IP total length ends the packet (Ethernet padding after) */
	__u32 l4_off;
	__u32 csum_off;        /* of the L4 checksum; 0 when the protocol has none we fix */
	__u32 csum_flags;      /* extra flags for bpf_l4_csum_replace */
	__be32 tcp_seq;        /* TCP: sequence and acknowledgment numbers (conntrack checks them) */
	__be32 tcp_ack;
	__u8  tcp_flags;
	__u8  icmp_type;
	__u8  icmp_error;      /* an ICMP error: the tuple is that of the packet it quotes */
	__u8  frag;            /* FN_FRAG_*: which part of a fragmented datagram */
	__be16 ip_id;          /* the IP ID, which names a datagram's fragments */
	__u16 pad;
};

#define FN_FRAG_NONE  0        /* a whole datagram */
#define FN_FRAG_FIRST 1        /* offset 0, more to come: has the transport header */
#define FN_FRAG_LATER 2        /* no transport header: ports from fn_frags (bpf/lib/frag.h) */

FN_INLINE int fn_icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

/*
 * Fills l4 for TCP, UDP and ICMP (echo and errors). Returns 0, or a negative drop reason:
 * -FN_DROP_NAT_PROTO for other protocols (left to the host stack by the callers),
 * -FN_DROP_MALFORMED_L4 for a truncated header or an impossible UDP length (dropped: never
 * forwarded rewritten). A non-first fragment (FN_FRAG_LATER) has addresses and protocol but
 * no ports yet: the caller takes them from its first fragment (fn_frag_ports()).
 */
FN_INLINE int fn_l4_parse(struct iphdr *ip, void *data, void *data_end, struct fn_l4 *l4)
{
	/* ip is always right after the Ethernet header; a constant base keeps the offset
	 * bounded for the verifier (IHL is 4 bits). */
	__u32 off = ETH_HLEN + ip->ihl * 4;
	void *l4h = data + off;

	/* A header must lie within the IP total length, not merely within the buffer: bytes past
	 * it are Ethernet padding, and a header hidden there must not open a flow. */
	l4->l3_end = ETH_HLEN + bpf_ntohs(ip->tot_len);
	l4->key.saddr = ip->saddr;
	l4->key.daddr = ip->daddr;
	l4->key.proto = ip->protocol;
	l4->l4_off = off;
	l4->ip_id = ip->id;
	if (ip->frag_off & bpf_htons(FN_IP_OFFSET)) {
		if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_ICMP)
			return -FN_DROP_NAT_PROTO;
		l4->frag = FN_FRAG_LATER; /* csum_off stays 0: no transport checksum in here */
		return 0;
	}
	if (ip->frag_off & bpf_htons(FN_IP_MF))
		l4->frag = FN_FRAG_FIRST;
	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4h;

		if ((void *)(th + 1) > data_end || off + sizeof(*th) > l4->l3_end)
			return -FN_DROP_MALFORMED_L4;
		l4->key.sport = th->source;
		l4->key.dport = th->dest;
		l4->tcp_flags = ((__u8 *)th)[13];
		l4->tcp_seq = th->seq;
		l4->tcp_ack = th->ack_seq;
		l4->csum_off = off + offsetof(struct tcphdr, check);
		return 0;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4h;
		__u32 udp_len;

		if ((void *)(uh + 1) > data_end || off + sizeof(*uh) > l4->l3_end)
			return -FN_DROP_MALFORMED_L4;
		/* the length must cover the header and fit the IP payload (a length the IP layer
		 * does not cover would be rewritten and forwarded, still malformed); a first
		 * fragment carries the whole datagram's length */
		udp_len = bpf_ntohs(uh->len);
		if (udp_len < sizeof(*uh) ||
		    (!(ip->frag_off & bpf_htons(FN_IP_MF)) && udp_len > bpf_ntohs(ip->tot_len) - ip->ihl * 4))
			return -FN_DROP_MALFORMED_L4;
		l4->key.sport = uh->source;
		l4->key.dport = uh->dest;
		l4->csum_off = off + offsetof(struct udphdr, check);
		l4->csum_flags = BPF_F_MARK_MANGLED_0; /* checksum 0 means "none": keep it 0 */
		return 0;
	}
	case IPPROTO_ICMP: {
		struct icmphdr *ih = l4h;

		if ((void *)(ih + 1) > data_end || off + sizeof(*ih) > l4->l3_end)
			return -FN_DROP_MALFORMED_L4;
		l4->icmp_type = ih->type;
		l4->csum_off = off + offsetof(struct icmphdr, checksum);
		/* The identifier is the requester's "port": a request's source port, a reply's
		 * destination port, the other one 0. So a request can never match the entry
		 * that expects the reply to one (an echo request from outside carrying the
		 * identifier of a container's mapping is the host's to answer). */
		if (ih->type == ICMP_ECHO) {
			l4->key.sport = ih->un.echo.id;
			l4->key.dport = 0;
			return 0;
		}
		if (ih->type == ICMP_ECHOREPLY) {
			l4->key.sport = 0;
			l4->key.dport = ih->un.echo.id;
			return 0;
		}
		if (fn_icmp_is_error(ih->type)) {
			l4->icmp_error = 1;
			return 0;
		}
		return -FN_DROP_NAT_PROTO;
	}
	default:
		return -FN_DROP_NAT_PROTO;
	}
}

FN_INLINE void fn_ct_key_reverse(const struct fn_ct_key *k, struct fn_ct_key *rev)
{
	rev->saddr = k->daddr;
	rev->daddr = k->saddr;
	rev->sport = k->dport;
	rev->dport = k->sport;
	rev->proto = k->proto;
	rev->pad[0] = rev->pad[1] = rev->pad[2] = 0;
}

#endif
