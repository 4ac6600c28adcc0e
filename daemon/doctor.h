/*
 * doctor.h — capsule doctor: checks of this host, and what capsule can do
 * on it, as a map in cleanroom's capability keys (control op Doctor).
 */
#ifndef CAPSULE_DOCTOR_H
#define CAPSULE_DOCTOR_H

#include <sys/types.h>

#include <jansson.h>

#include "hv.h"

struct doctor_env {
	const struct hv_ops	*hv;
	const struct hv_caps	*caps;
	const char		*state_dir;
	const char		*image_dir;	/* --image-dir, may be NULL */
	const char		*socket;	/* NULL: handed over by systemd */
};

void	doctor_init(const struct doctor_env *e);
/* {"checks":[{"name","status","message"}...], "capabilities":{...}} */
json_t	*doctor_report(uid_t uid);

#endif /* CAPSULE_DOCTOR_H */
