/*
 * control.h — the control socket (newline-delimited JSON, proto/ctl.h).
 */
#ifndef CAPSULE_CONTROL_H
#define CAPSULE_CONTROL_H

#include <event2/event.h>

#include "err.h"
#include "hv.h"

/* Listens on path (mode 0600), replacing a stale socket but never a live
 * one. */
int	control_listen(struct event_base *base, const char *path,
	    const struct hv_ops *hv, const struct hv_caps *caps,
	    struct cap_err *err);
void	control_close(const char *path);

#endif /* CAPSULE_CONTROL_H */
