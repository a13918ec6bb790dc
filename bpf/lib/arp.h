/* SPDX-License-Identifier: Apache-2.0 */
/* ARP for IPv4 over Ethernet: parsing and answering a request in place. */
#ifndef FN_LIB_ARP_H
#define FN_LIB_ARP_H

#include "common.h"
#include "eth.h"

#define FN_ARP_REQUEST 1
#define FN_ARP_REPLY   2

struct fn_arp {
	__be16 htype;
	__be16 ptype;
	__u8   hlen;
	__u8   plen;
	__be16 op;
	__u8   sha[6];
	__be32 spa;
	__u8   tha[6];
	__be32 tpa;
} __attribute__((packed));

/* Returns the ARP body if it is Ethernet/IPv4 ARP in the linear data, else NULL. */
FN_INLINE struct fn_arp *fn_arp_header(void *l3, void *data_end)
{
	struct fn_arp *arp = l3;

	if ((void *)(arp + 1) > data_end)
		return NULL;
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4)
		return NULL;
	return arp;
}

/* Turns a request into the reply "tpa is at answer_mac", addressed back to the asker. */
FN_INLINE void fn_arp_answer(struct ethhdr *eth, struct fn_arp *arp, const __u8 *answer_mac)
{
	__be32 asked = arp->tpa;

	fn_mac_copy(eth->h_dest, eth->h_source);
	fn_mac_copy(eth->h_source, answer_mac);
	arp->op = bpf_htons(FN_ARP_REPLY);
	fn_mac_copy(arp->tha, arp->sha);
	arp->tpa = arp->spa;
	fn_mac_copy(arp->sha, answer_mac);
	arp->spa = asked;
}

#endif
