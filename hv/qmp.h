/*
 * qmp.h — a QEMU Machine Protocol client on the daemon's event loop.
 *
 * QEMU serves QMP on a socket capsuled made; capsuled connects before QEMU
 * runs, negotiates capabilities, and from then on reads every reply and
 * event. Events reach the owner as (name, data); a command's error reply
 * as (command, QEMU's description); other replies need nothing. QEMU is one step closer
 * to the guest than capsuled, so what it says is parsed with limits.
 */
#ifndef CAPSULE_QMP_H
#define CAPSULE_QMP_H

#include <event2/event.h>
#include <jansson.h>

#define QMP_MAX_LINE	(64 * 1024)

struct qmp;

struct qmp_cbs {
	/* An event; data may be NULL. */
	void	(*event)(void *arg, const char *name, json_t *data);
	/* The connection ended (QEMU exited, or broke the protocol). */
	void	(*closed)(void *arg, const char *why);
	/* A command failed; may be NULL. */
	void	(*error)(void *arg, const char *cmd, const char *desc);
};

/* Takes the connected socket fd. */
struct qmp *qmp_new(struct event_base *base, int fd, const struct qmp_cbs *cbs,
	    void *arg, const char *what);
/* Queues {"execute": cmd}. */
int	qmp_execute(struct qmp *q, const char *cmd);
/* Queues {"execute": cmd, "arguments": args}; takes args. */
int	qmp_execute_args(struct qmp *q, const char *cmd, json_t *args);
/* Hands QEMU a file now (SCM_RIGHTS on a lone space, which QMP reads as
 * whitespace); QEMU keeps it for the next command that takes one, such
 * as getfd. fd stays the caller's. -EAGAIN while commands are still
 * queued (the space would land inside one). */
int	qmp_send_fd(struct qmp *q, int fd);
void	qmp_free(struct qmp *q);

#endif /* CAPSULE_QMP_H */
