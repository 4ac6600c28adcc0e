/*
 * hv.c — the registry of hypervisor backends (see hv.h).
 */
#include <string.h>

#include "hv.h"
#include "proto.h"

#ifdef __APPLE__
extern const struct hv_ops vz_ops;
static const struct hv_ops *const backends[] = { &vz_ops, NULL };
#else
extern const struct hv_ops qemu_ops;
static const struct hv_ops *const backends[] = { &qemu_ops, NULL };
#endif

const struct hv_ops *const *
hv_list(void)
{
	return backends;
}

const struct hv_ops *
hv_default(void)
{
	return backends[0];
}

const struct hv_ops *
hv_find(const char *name)
{
	for (const struct hv_ops *const *b = backends; *b != NULL; b++)
		if (strcmp((*b)->name, name) == 0)
			return *b;
	return NULL;
}

const char *
hv_accel_name(enum hv_accel a)
{
	switch (a) {
	case HV_ACCEL_AUTO:	return "auto";
	case HV_ACCEL_KVM:	return ACCEL_KVM;
	case HV_ACCEL_TCG:	return ACCEL_TCG;
	case HV_ACCEL_HVF:	return ACCEL_HVF;
	}
	return "unknown";
}

int
hv_accel_parse(const char *s, enum hv_accel *a)
{
	static const enum hv_accel all[] = { HV_ACCEL_AUTO, HV_ACCEL_KVM,
	    HV_ACCEL_TCG, HV_ACCEL_HVF };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(s, hv_accel_name(all[i])) == 0) {
			*a = all[i];
			return 0;
		}
	return -1;
}
