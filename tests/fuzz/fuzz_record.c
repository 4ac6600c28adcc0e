/*
 * fuzz_record.c — libFuzzer harness for the persisted VM record, which
 * capsuled reads back as untrusted input: any bytes give a record whose
 * every field is in range, or an error; and a record that decodes encodes
 * to something that decodes to the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "record.h"

static int
same(const struct record *a, const struct record *b)
{
	if (strcmp(a->vm_id, b->vm_id) != 0 || a->proc.pid != b->proc.pid ||
	    a->proc.start != b->proc.start || a->nmade != b->nmade)
		return 0;
	for (size_t i = 0; i < a->nmade; i++)
		if (strcmp(a->made[i].dir, b->made[i].dir) != 0 ||
		    strcmp(a->made[i].name, b->made[i].name) != 0 ||
		    a->made[i].ino != b->made[i].ino ||
		    a->made[i].type != b->made[i].type)
			return 0;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct record r, again;
	struct cap_err err;
	char *s;

	if (record_decode((const char *)data, size, &r, &err) < 0)
		return 0;
	if (!record_id_ok(r.vm_id) || r.proc.pid < 2 || r.nmade > VMFILES_MAX)
		abort();
	for (size_t i = 0; i < r.nmade; i++) {
		const struct record_made *m = &r.made[i];

		if (m->dir[0] != '/' || strchr(m->name, '/') != NULL ||
		    m->name[0] == '\0' || strcmp(m->name, "..") == 0 ||
		    strcmp(m->name, ".") == 0 || (m->type != S_IFSOCK &&
		    m->type != S_IFDIR && m->type != S_IFREG))
			abort();
	}
	if ((s = record_encode(&r)) == NULL ||
	    record_decode(s, strlen(s), &again, &err) < 0 || !same(&r, &again))
		abort();
	free(s);
	record_free(&again);
	record_free(&r);
	return 0;
}
