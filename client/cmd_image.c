/*
 * cmd_image.c — capsule image import|pull|ls|inspect|rm|prune.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"

#define IMAGE_USAGE \
	"usage: capsule image import PATH [--name NAME] [--json]\n" \
	"       capsule image pull REF [--name NAME] [--tls-verify=false] " \
	"[--json]\n" \
	"       capsule image ls [--json]\n" \
	"       capsule image inspect NAME\n" \
	"       capsule image rm NAME...\n" \
	"       capsule image prune [--json]"

static void
human_size(long long b, char *out, size_t len)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(out, len, i ? "%.1f%s" : "%.0f%s", v, u[i]);
}

/* The 12 hex digits people use to tell images apart. */
static const char *
short_digest(json_t *img)
{
	const char *d = cli_str(img, J_DIGEST);

	return strncmp(d, "sha256:", 7) == 0 ? d + 7 : d;
}

/* import and pull: progress lines until the reply. */
static int
image_fetch(int argc, char **argv, int pull)
{
	json_t *req = json_pack("{s:s, s:b}", J_OP, pull ? OP_PULL_IMAGE :
	    OP_IMPORT_IMAGE, J_PROGRESS, 1), *r;
	const char *src = NULL;
	char abs[PATH_MAX];
	int json = 0, fd, tty = isatty(STDERR_FILENO), status = CLI_EXIT_FAIL;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
			json_object_set_new(req, J_NAME,
			    json_string(argv[++i]));
		else if (pull && strcmp(argv[i], "--tls-verify=false") == 0)
			json_object_set_new(req, J_TLS_VERIFY, json_false());
		else if (pull && strcmp(argv[i], "--tls-verify=true") == 0)
			json_object_set_new(req, J_TLS_VERIFY, json_true());
		else if (argv[i][0] != '-' && src == NULL)
			src = argv[i];
		else {
			cli_error(IMAGE_USAGE);
			json_decref(req);
			return CLI_EXIT_USAGE;
		}
	}
	if (src == NULL) {
		cli_error(IMAGE_USAGE);
		json_decref(req);
		return CLI_EXIT_USAGE;
	}
	if (!pull && src[0] != '/') {
		/* The daemon wants an absolute path; it reads it as us. */
		if (realpath(src, abs) == NULL) {
			cli_error("%s: no such file or directory", src);
			json_decref(req);
			return CLI_EXIT_FAIL;
		}
		src = abs;
	}
	json_object_set_new(req, pull ? J_REF : J_PATH, json_string(src));
	if ((fd = conn_open(cli_socket, NULL)) < 0) {
		json_decref(req);
		return CLI_EXIT_FAIL;
	}
	for (r = conn_call(fd, req); r != NULL; r = conn_read(fd)) {
		json_t *p = json_object_get(r, J_PROGRESS);

		if (p == NULL)
			break;
		if (json) {
			json_dumpf(r, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			fflush(stdout);
		} else if (tty) {
			fprintf(stderr, "%-7s %s\n", cli_str(p, J_STAGE),
			    cli_str(p, J_MESSAGE));
		}
		json_decref(r);
	}
	close(fd);
	if (r == NULL || cli_reply_failed(r)) {
		json_decref(r);
		return CLI_EXIT_FAIL;
	}
	if (json) {	/* JSON lines: the progress, then the image */
		json_dumpf(json_object_get(r, J_IMAGE), stdout, JSON_COMPACT);
		fputc('\n', stdout);
	} else
		printf("%s %s\n", cli_str(json_object_get(r, J_IMAGE), J_NAME),
		    cli_str(json_object_get(r, J_IMAGE), J_DIGEST));
	status = 0;
	json_decref(r);
	return status;
}

static int
image_ls(int argc, char **argv)
{
	json_t *r, *imgs, *img;
	int json = 0;
	size_t i;

	for (int k = 2; k < argc; k++) {
		if (strcmp(argv[k], "--json") == 0)
			json = 1;
		else {
			cli_error(IMAGE_USAGE);
			return CLI_EXIT_USAGE;
		}
	}
	if ((r = conn_request(json_pack("{s:s}", J_OP, OP_LIST_IMAGES))) ==
	    NULL)
		return CLI_EXIT_FAIL;
	imgs = json_object_get(r, J_IMAGES);
	if (json) {
		cli_print_json(imgs);
		json_decref(r);
		return 0;
	}
	printf("%-32s  %-12s  %9s  %s\n", "NAME", "DIGEST", "SIZE", "CREATED");
	json_array_foreach(imgs, i, img) {
		char size[32], when[32];
		time_t t = (time_t)json_integer_value(json_object_get(img,
		    J_CREATED_AT));
		struct tm tm;

		human_size(json_integer_value(json_object_get(img, J_SIZE)),
		    size, sizeof(size));
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%-32s  %-12.12s  %9s  %s\n", cli_str(img, J_NAME),
		    short_digest(img), size, when);
	}
	json_decref(r);
	return 0;
}

static int
image_inspect(int argc, char **argv)
{
	json_t *r;

	if (argc != 3) {
		cli_error(IMAGE_USAGE);
		return CLI_EXIT_USAGE;
	}
	if ((r = conn_request(json_pack("{s:s, s:s}", J_OP, OP_INSPECT_IMAGE,
	    J_IMAGE, argv[2]))) == NULL)
		return CLI_EXIT_FAIL;
	cli_print_json(json_object_get(r, J_IMAGE));
	json_decref(r);
	return 0;
}

static int
image_rm(int argc, char **argv)
{
	int status = 0;
	json_t *r;

	if (argc < 3) {
		cli_error(IMAGE_USAGE);
		return CLI_EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		if ((r = conn_request(json_pack("{s:s, s:s}", J_OP,
		    OP_REMOVE_IMAGE, J_IMAGE, argv[i]))) == NULL) {
			status = CLI_EXIT_FAIL;
			continue;
		}
		printf("%s\n", argv[i]);
		json_decref(r);
	}
	return status;
}

static int
image_prune(int argc, char **argv)
{
	json_t *r, *d;
	size_t i;

	if (argc > 3 || (argc == 3 && strcmp(argv[2], "--json") != 0)) {
		cli_error(IMAGE_USAGE);
		return CLI_EXIT_USAGE;
	}
	if ((r = conn_request(json_pack("{s:s}", J_OP, OP_PRUNE_IMAGES))) ==
	    NULL)
		return CLI_EXIT_FAIL;
	if (argc == 3)
		cli_print_json(json_object_get(r, J_REMOVED));
	else
		json_array_foreach(json_object_get(r, J_REMOVED), i, d)
			printf("%s\n", json_string_value(d));
	json_decref(r);
	return 0;
}

int
cmd_image(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";

	if (strcmp(sub, "import") == 0)
		return image_fetch(argc, argv, 0);
	if (strcmp(sub, "pull") == 0)
		return image_fetch(argc, argv, 1);
	if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
		return image_ls(argc, argv);
	if (strcmp(sub, "inspect") == 0)
		return image_inspect(argc, argv);
	if (strcmp(sub, "rm") == 0)
		return image_rm(argc, argv);
	if (strcmp(sub, "prune") == 0)
		return image_prune(argc, argv);
	cli_error(IMAGE_USAGE);
	return CLI_EXIT_USAGE;
}
