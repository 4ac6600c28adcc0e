/*
 * control.h — the control socket (newline-delimited JSON, proto/ctl.h).
 */
#ifndef CAPSULE_CONTROL_H
#define CAPSULE_CONTROL_H

#include <event2/event.h>

#include "err.h"
#include "hv.h"

#include <sys/types.h>
#include <jansson.h>

/* The Doctor op's report: checks and capabilities (a new object). */
typedef json_t *control_doctor_fn(uid_t uid);

struct control_cfg {
	struct event_base	*base;
	const struct hv_ops	*hv;
	const struct hv_caps	*caps;
	control_doctor_fn	*doctor;
};

/* Listens on path (mode 0600; with group != -1, 0660 and that group),
 * replacing a stale socket but never a live one or anything else. */
int	control_listen(const struct control_cfg *cfg, const char *path,
	    gid_t group, struct cap_err *err);
/* Serves a listening socket someone else made (systemd's activation). */
int	control_listen_fd(const struct control_cfg *cfg, int fd,
	    struct cap_err *err);
/* Stops listening, closes every connection; removes the socket file if
 * capsuled made it (path may be NULL). */
void	control_close(const char *path);

#endif /* CAPSULE_CONTROL_H */
