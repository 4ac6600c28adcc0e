/*
 * log.c — leveled logging (see log.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

static enum log_level log_level = LOG_LVL_INFO;
static int log_tty;

static const char *const log_names[] = { "error", "warn", "info", "debug" };

/* libevent's own messages (the resolver's above all) join ours. */
static void
log_libevent(int severity, const char *msg)
{
	enum log_level l = severity >= EVENT_LOG_ERR ? LOG_LVL_ERROR :
	    severity == EVENT_LOG_WARN ? LOG_LVL_WARN :
	    severity == EVENT_LOG_MSG ? LOG_LVL_INFO : LOG_LVL_DEBUG;

	log_msg(l, "libevent: %s", msg);
}

void
log_init(enum log_level level)
{
	log_level = level;
	log_tty = isatty(STDERR_FILENO);
	event_set_log_callback(log_libevent);
}

int
log_parse_level(const char *s, enum log_level *out)
{
	for (int i = 0; i <= LOG_LVL_DEBUG; i++)
		if (strcmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	return -1;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char stamp[32] = "", msg[4096];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > log_level)
		return;
	if (log_tty) {
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%H:%M:%S ", &tm);
	}
	/* <N> prefixes are syslog priorities that journald understands. */
	fprintf(stderr, "%s<%d>%s: ", stamp, level == LOG_LVL_ERROR ? 3 :
	    level == LOG_LVL_WARN ? 4 : level == LOG_LVL_INFO ? 6 : 7,
	    log_names[level]);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One message, one line: a caller's path or a tool's output with a
	 * newline in it cannot forge a line of its own. */
	for (char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	fprintf(stderr, "%s\n", msg);
}
