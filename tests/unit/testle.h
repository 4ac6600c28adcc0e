/*
 * testle.h — little-endian writers for tests that build channel payloads
 * by hand (the channel's integers are little-endian, proto/chan.h).
 */
#ifndef CAPSULE_TESTLE_H
#define CAPSULE_TESTLE_H

#include <stdint.h>

static inline void
put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static inline void
put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = v >> 24;
}

#endif /* CAPSULE_TESTLE_H */
