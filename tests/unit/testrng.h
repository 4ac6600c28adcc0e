/*
 * testrng.h — a deterministic xorshift generator for the unit tests, so a
 * failure on random input reproduces. Seed rng_state before use.
 */
#ifndef CAPSULE_TESTRNG_H
#define CAPSULE_TESTRNG_H

#include <stdint.h>

static uint32_t rng_state = 1;

static inline uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

#endif /* CAPSULE_TESTRNG_H */
