/*
 * proxy.h — a VM's exec socket: each connection runs one command in the
 * guest, speaking cleanroom's vsockexec JSON lines (proto/execmsg.h), and
 * is bridged onto its own agent channel stream.
 */
#ifndef CAPSULE_PROXY_H
#define CAPSULE_PROXY_H

#include <event2/event.h>

#include "err.h"

struct proxy;
struct vm;

struct proxy *proxy_new(struct event_base *base, struct vm *vm,
	    const char *path, struct cap_err *err);
/* Closes the listener, unlinks the socket, ends sessions that have not
 * started a command yet. Running sessions end with their agent streams. */
void	proxy_free(struct proxy *p);

#endif /* CAPSULE_PROXY_H */
