/*
 * config.c — the configuration file (see config.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "proto.h"
#include "util.h"

enum config_type { CT_STRING, CT_PATH, CT_UINT, CT_U64, CT_CHOICE };

static const struct config_item {
	enum config_key	 key;
	const char	*name;
	enum config_type type;
	size_t		 off;
	size_t		 size;		/* strings: buffer size */
	uint64_t	 min, max;	/* numbers */
	const char	*choices;	/* CT_CHOICE: "a|b|c" */
} items[] = {
#define S(k, n, f, t)	{ k, n, t, offsetof(struct config, f), \
			    sizeof(((struct config *)0)->f), 0, 0, NULL }
#define N(k, n, f, t, lo, hi) { k, n, t, offsetof(struct config, f), 0, \
			    lo, hi, NULL }
#define C(k, n, f, ch)	{ k, n, CT_CHOICE, offsetof(struct config, f), \
			    sizeof(((struct config *)0)->f), 0, 0, ch }
	S(CK_SOCKET, "socket", socket, CT_PATH),
	S(CK_SOCKET_GROUP, "socket_group", socket_group, CT_STRING),
	S(CK_STATE_DIR, "state_dir", state_dir, CT_PATH),
	S(CK_IMAGE_DIR, "image_dir", image_dir, CT_PATH),
	C(CK_ACCEL, "accel", accel, "auto|kvm|tcg"),
	S(CK_METRICS_LISTEN, "metrics_listen", metrics_listen, CT_STRING),
	S(CK_DNS_SERVER, "dns_server", dns_server, CT_STRING),
	C(CK_LOG_LEVEL, "log_level", log_level, "error|warn|info|debug"),
	N(CK_DEFAULT_VCPUS, "default_vcpus", default_vcpus, CT_UINT, 1, 256),
	N(CK_DEFAULT_MEMORY_MIB, "default_memory_mib", default_memory_mib,
	    CT_U64, 64, 1024 * 1024),
	N(CK_CONSOLE_LOG_MAX_MIB, "console_log_max_mib", console_log_max_mib,
	    CT_U64, 1, 65536),
	N(CK_REQUEST_TIMEOUT, "request_timeout", request_timeout, CT_UINT, 1,
	    3600),
	N(CK_CLIENT_INPUT_MAX_MIB, "client_input_max_mib",
	    client_input_max_mib, CT_U64, 1, 65536),
	N(CK_USER_MAX_VMS, "user_max_vms", user_max_vms, CT_UINT, 0, 100000),
	N(CK_USER_MAX_VCPUS, "user_max_vcpus", user_max_vcpus, CT_UINT, 0,
	    1000000),
	N(CK_USER_MAX_MEMORY_MIB, "user_max_memory_mib", user_max_memory_mib,
	    CT_U64, 0, UINT64_C(1) << 40),
	N(CK_USER_MAX_DISK_MIB, "user_max_disk_mib", user_max_disk_mib,
	    CT_U64, 0, UINT64_C(1) << 40),
	N(CK_VM_CPU_QUOTA, "vm_cpu_quota", vm_cpu_quota, CT_UINT, 0, 100000),
	N(CK_VM_TASKS_MAX, "vm_tasks_max", vm_tasks_max, CT_UINT, 0, 1000000),
	N(CK_VM_MEMORY_OVERHEAD_MIB, "vm_memory_overhead_mib",
	    vm_memory_overhead_mib, CT_U64, 0, 1024 * 1024),
	C(CK_TEMPLATES, "templates", templates, "on|off"),
#undef S
#undef N
#undef C
};
#define NITEMS	(sizeof(items) / sizeof(items[0]))

void
config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->accel, sizeof(c->accel), "auto");
	snprintf(c->log_level, sizeof(c->log_level), "info");
	snprintf(c->templates, sizeof(c->templates), "on");
	c->default_vcpus = 1;
	c->default_memory_mib = 512;
	c->console_log_max_mib = 10;
	c->request_timeout = 30;
	c->client_input_max_mib = 64;
}

int
config_was_set(const struct config *c, enum config_key k)
{
	return (c->set >> k) & 1;
}

static int
line_err(struct cap_err *err, const char *file, unsigned line,
    const char *fmt, const char *a, const char *b)
{
	char why[512];

	snprintf(why, sizeof(why), fmt, a, b);
	/* Line 0: a command-line flag, named by `file`. */
	if (line == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "%s: %s",
		    file, why);
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "%s:%u: %s", file,
	    line, why);
}

/* A value for a message: printable, short. */
static void
shown(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; *s && o + 4 < cap; s++)
		out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	if (*s)
		memcpy(out + o, "...", 4);
	else
		out[o] = '\0';
}

static int
choice_ok(const char *choices, const char *v)
{
	size_t n = strlen(v);

	for (const char *p = choices; *p;) {
		size_t m = strcspn(p, "|");

		if (m == n && strncmp(p, v, n) == 0)
			return 1;
		p += m + (p[m] == '|');
	}
	return 0;
}

static int
set_item(const struct config_item *it, struct config *c, const char *v,
    const char *file, unsigned line, struct cap_err *err)
{
	char *base = (char *)c + it->off, *end, sv[80];
	unsigned long long n;

	shown(v, sv, sizeof(sv));
	switch (it->type) {
	case CT_PATH:
		if (v[0] != '/')
			return line_err(err, file, line, "%s must be an "
			    "absolute path, not \"%s\"", it->name, sv);
		/* fall through */
	case CT_STRING:
	case CT_CHOICE:
		if (strlen(v) >= it->size)
			return line_err(err, file, line, "%s is too long "
			    "(\"%s\")", it->name, sv);
		if (it->type == CT_CHOICE && !choice_ok(it->choices, v))
			return line_err(err, file, line, "%s takes one of "
			    "%s", it->name, it->choices);
		memcpy(base, v, strlen(v) + 1);
		return 0;
	case CT_UINT:
	case CT_U64:
		errno = 0;
		n = strtoull(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 ||
		    n < it->min || n > it->max) {
			char range[64];

			snprintf(range, sizeof(range), "%llu to %llu",
			    (unsigned long long)it->min,
			    (unsigned long long)it->max);
			return line_err(err, file, line, "%s takes a whole "
			    "number from %s", it->name, range);
		}
		if (it->type == CT_UINT)
			*(unsigned *)(void *)base = (unsigned)n;
		else
			*(uint64_t *)(void *)base = (uint64_t)n;
		return 0;
	}
	return line_err(err, file, line, "%s: %s", it->name, "bad type");
}

/* `pool = USER SIZE [FIELDS]`: checked as far as the file can say (the
 * user exists and the fields make a StartVM is for capsuled to say when
 * it applies them, with the same FILE:LINE). */
static int
set_pool(struct config *c, char *v, const char *file, unsigned line,
    struct cap_err *err)
{
	struct config_pool *p;
	char *user, *size, *req, *end, sv[80];
	unsigned long n;
	json_t *j;
	size_t len;

	if (c->npools >= CONFIG_MAX_POOLS)
		return line_err(err, file, line, "more than %s pool lines%s",
		    STRINGIFY(CONFIG_MAX_POOLS), "");
	p = &c->pools[c->npools];
	user = v;
	len = strcspn(user, " \t");
	size = user + len;
	if (*size != '\0')
		*size++ = '\0';
	while (*size == ' ' || *size == '\t')
		size++;
	req = size + strcspn(size, " \t");
	if (*req != '\0')
		*req++ = '\0';
	while (*req == ' ' || *req == '\t')
		req++;
	shown(user, sv, sizeof(sv));
	if (len == 0 || len >= sizeof(p->user) ||
	    strspn(user, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789._-") != len || user[0] == '-')
		return line_err(err, file, line, "pool takes USER SIZE "
		    "[STARTVM-FIELDS]; \"%s\" is not a user name or uid%s",
		    sv, "");
	errno = 0;
	n = strtoul(size, &end, 10);
	if (size[0] < '0' || size[0] > '9' || *end != '\0' || errno != 0 ||
	    n < 1 || n > CONFIG_POOL_MAX_SIZE)
		return line_err(err, file, line, "pool: the size must be a "
		    "whole number from 1 to %s%s",
		    STRINGIFY(CONFIG_POOL_MAX_SIZE), "");
	if (*req == '\0')
		req = "{}";
	if ((j = json_loads(req, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
	    !json_is_object(j)) {
		json_decref(j);
		shown(req, sv, sizeof(sv));
		return line_err(err, file, line, "pool: the StartVM fields "
		    "must be one JSON object, not \"%s\"%s", sv, "");
	}
	json_decref(j);
	/* Fits: the line itself is shorter than the buffer. */
	snprintf(p->user, sizeof(p->user), "%s", user);
	snprintf(p->request, sizeof(p->request), "%s", req);
	p->size = (unsigned)n;
	p->line = line;
	c->npools++;
	return 0;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

int
config_parse(const char *text, size_t len, const char *file,
    struct config *c, struct cap_err *err)
{
	char buf[1024];
	unsigned line = 0;
	size_t off = 0;

	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = nl != NULL ? (size_t)(nl - text - off) : len - off;
		char *key, *val, *eq;
		const struct config_item *it = NULL;
		int r;

		line++;
		if (n >= sizeof(buf))
			return line_err(err, file, line, "line longer than "
			    "%s bytes%s", "1023", "");
		memcpy(buf, text + off, n);
		buf[n] = '\0';
		off += n + (nl != NULL);
		if (memchr(buf, '\0', n) != NULL)
			return line_err(err, file, line, "NUL byte in the "
			    "line%s%s", "", "");
		key = trim(buf);
		if (*key == '\0' || *key == '#')
			continue;
		if ((eq = strchr(key, '=')) == NULL)
			return line_err(err, file, line, "expected key = "
			    "value, not \"%s\"%s", key, "");
		*eq = '\0';
		key = trim(key);
		val = trim(eq + 1);
		n = strlen(val);
		if (n >= 2 && val[0] == '"' && val[n - 1] == '"') {
			val[n - 1] = '\0';
			val++;
		}
		if (strcmp(key, "pool") == 0) {
			if ((r = set_pool(c, val, file, line, err)) < 0)
				return r;
			continue;
		}
		for (size_t i = 0; i < NITEMS; i++)
			if (strcmp(items[i].name, key) == 0)
				it = &items[i];
		if (it == NULL) {
			char sk[80];

			shown(key, sk, sizeof(sk));
			return line_err(err, file, line, "unknown key "
			    "\"%s\"%s", sk, "");
		}
		if (config_was_set(c, it->key))
			return line_err(err, file, line, "%s is set twice%s",
			    it->name, "");
		if ((r = set_item(it, c, val, file, line, err)) < 0)
			return r;
		c->set |= UINT64_C(1) << it->key;
	}
	return 0;
}

int
config_default_path(char *buf, size_t len, struct cap_err *err)
{
	const char *x = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	int r;

	if (geteuid() == 0)
		r = snprintf(buf, len, "%s", CONFIG_SYSTEM_PATH);
	else if (x != NULL && x[0] == '/')
		r = snprintf(buf, len, "%s/capsule/capsuled.conf", x);
	else if (home != NULL && home[0] == '/')
		r = snprintf(buf, len, "%s/.config/capsule/capsuled.conf",
		    home);
	else
		return cap_err_set(err, ENOENT, E_INVALID_ARGUMENT,
		    "HOME is not set; pass --config FILE");
	if (r < 0 || (size_t)r >= len)
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "configuration path is too long");
	return 0;
}

int
config_load(const char *path, int must_exist, struct config *c,
    struct cap_err *err)
{
	struct stat st;
	char *text;
	ssize_t n;
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		if (errno == ENOENT && !must_exist)
			return 0;
		return cap_err_set(err, errno, E_INVALID_ARGUMENT, "%s: %s",
		    path, strerror(errno));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > CONFIG_MAX_BYTES) {
		close(fd);
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "%s: not a "
		    "regular file of at most %d bytes", path, CONFIG_MAX_BYTES);
	}
	/* Settings decide who may do what: a file others can change is
	 * not to be believed (as sshd does). */
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		close(fd);
		return cap_err_set(err, EPERM, E_INVALID_ARGUMENT, "%s belongs "
		    "to uid %u; it must be root's or capsuled's", path,
		    (unsigned)st.st_uid);
	}
	if (st.st_mode & 0022) {
		close(fd);
		return cap_err_set(err, EPERM, E_INVALID_ARGUMENT, "%s is "
		    "writable by others (mode %04o)", path,
		    (unsigned)(st.st_mode & 07777));
	}
	if ((text = malloc(CONFIG_MAX_BYTES + 1)) == NULL) {
		close(fd);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	n = read(fd, text, CONFIG_MAX_BYTES + 1);
	close(fd);
	if (n < 0)
		r = cap_err_set(err, errno, E_INVALID_ARGUMENT, "%s: %s", path,
		    strerror(errno));
	else
		r = config_parse(text, (size_t)n, path, c, err);
	free(text);
	return r;
}

static const struct config_item *
item_of(enum config_key k)
{
	for (size_t i = 0; i < NITEMS; i++)
		if (items[i].key == k)
			return &items[i];
	return NULL;
}

const char *
config_key_name(enum config_key k)
{
	const struct config_item *it = item_of(k);

	return it != NULL ? it->name : "?";
}

void
config_merge(struct config *dst, const struct config *src)
{
	for (size_t i = 0; i < NITEMS; i++) {
		const struct config_item *it = &items[i];
		size_t n = it->type == CT_UINT ? sizeof(unsigned) :
		    it->type == CT_U64 ? sizeof(uint64_t) : it->size;

		if (!config_was_set(src, it->key))
			continue;
		memcpy((char *)dst + it->off, (const char *)src + it->off, n);
		dst->set |= UINT64_C(1) << it->key;
	}
}

int
config_set(struct config *c, enum config_key k, const char *value,
    const char *what, struct cap_err *err)
{
	const struct config_item *it = item_of(k);
	int r;

	if (it == NULL)
		return cap_err_set(err, EINVAL, E_INTERNAL, "no such key");
	if ((r = set_item(it, c, value, what, 0, err)) < 0)
		return r;
	c->set |= UINT64_C(1) << k;
	return 0;
}
