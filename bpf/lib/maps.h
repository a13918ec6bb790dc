/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maps of fastnet/maps.h as bcc declarations: the only bcc-specific declarations of the
 * datapath, included by fastnet.c alone.
 *
 * bcc rewrites map method calls (lookup, update, ...) only when they are spelled in its main
 * source file, so the accessors over these maps are defined in fastnet.c; the logic headers
 * in lib/ call them through the prototypes of lib/map_access.h.
 */
#ifndef FN_LIB_MAPS_H
#define FN_LIB_MAPS_H

#include "common.h"
#include "fastnet/maps.h"

/* bcc's declaring macros per map type, as bcc's own BPF_TABLE, BPF_LPM_TRIE, BPF_PROG_ARRAY
 * and BPF_SK_STORAGE spell them. */
#define FN_BCC_MAP_HASH(name, key, value, capacity, flags) \
	BPF_F_TABLE("hash", key, value, name, capacity, flags)
#define FN_BCC_MAP_ARRAY(name, key, value, capacity, flags) \
	BPF_F_TABLE("array", key, value, name, capacity, flags)
#define FN_BCC_MAP_PERCPU_ARRAY(name, key, value, capacity, flags) \
	BPF_F_TABLE("percpu_array", key, value, name, capacity, flags)
#define FN_BCC_MAP_LRU_HASH(name, key, value, capacity, flags) \
	BPF_F_TABLE("lru_hash", key, value, name, capacity, flags)
#define FN_BCC_MAP_LPM_TRIE(name, key, value, capacity, flags) \
	BPF_F_TABLE("lpm_trie", key, value, name, capacity, flags)
#define FN_BCC_MAP_PROG_ARRAY(name, key, value, capacity, flags) \
	BPF_F_TABLE("prog", key, value, name, capacity, flags)
/* bcc's BPF_SK_STORAGE: its own struct (sk_storage_get), key int, no capacity */
#define FN_BCC_MAP_SK_STORAGE(name, key, value, capacity, flags) \
	BPF_SK_STORAGE(name, value)

/* A map's SCOPE decides whether this build declares it. */
#define FN_BCC_IN_PINNED(decl)        decl
#define FN_BCC_IN_PROGRAMS_ONLY(decl) decl
#ifdef FN_TEST
#define FN_BCC_IN_TEST_BUILD(decl)    decl
#else
#define FN_BCC_IN_TEST_BUILD(decl)
#endif

#define FN_BCC_DECLARE_MAP(name, type, key, value, capacity, flags, scope) \
	FN_BCC_IN_##scope(FN_BCC_MAP_##type(name, key, value, capacity, flags);)

FN_MAPS(FN_BCC_DECLARE_MAP)

#endif
