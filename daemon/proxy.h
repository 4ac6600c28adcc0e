/*
 * proxy.h — a VM's exec socket: each connection runs one command in the
 * guest, speaking cleanroom's vsockexec JSON lines (proto/execmsg.h), and
 * is bridged onto its own agent channel stream.
 */
#ifndef CAPSULE_PROXY_H
#define CAPSULE_PROXY_H

#include <sys/types.h>

#include <event2/event.h>

#include "err.h"

struct proxy;
struct agent;
struct oci_config;

struct proxy_cbs {
	/* The VM's agent channel if a command can start now; else NULL,
	 * with the reason in why. */
	struct agent *(*agent)(void *arg, char *why, size_t len);
};

/* Serves exec sessions on the listening socket fd (taken) for the VM's
 * owner (and root): another uid's connection is refused, in protocol. */
/* defaults (may be NULL; the caller's, outliving the proxy): an image's
 * Env, WorkingDir and User for what a request leaves out, and its
 * Entrypoint + Cmd for a request without a command. */
struct proxy *proxy_new(struct event_base *base, int fd,
	    const struct oci_config *defaults, const char *vm_id,
	    uid_t owner, const struct proxy_cbs *cbs, void *arg,
	    struct cap_err *err);
/* Closes the listener and ends sessions that have not started a command
 * yet, saying why. Running sessions end with their agent streams. (The
 * socket file is its maker's to remove.) */
void	proxy_free(struct proxy *p, const char *why);
/* Sessions open now (each an exec or a copy). */
size_t	proxy_sessions(const struct proxy *p);

#endif /* CAPSULE_PROXY_H */
