/* elm convert OFFICIAL OUT.elm: an official PyTorch checkpoint to a .elm
 * file, by running the Python converter (bindings/python, elm.convert),
 * which reads torch's zip archives without torch. */
#include "cli.h"

#include <elm.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef ELM_PYTHON_SOURCE_DIR
#define ELM_PYTHON_SOURCE_DIR ""
#endif
#ifndef ELM_PYTHON_DIR
#define ELM_PYTHON_DIR ""
#endif

static const char help[] =
    "usage: elm convert OFFICIAL OUT.elm [--config model_config.json]\n"
    "\n"
    "Convert an official ELM PyTorch checkpoint (a state dict .pt, or a folder\n"
    "holding exactly one) with its model_config.json (default: beside the\n"
    "checkpoint) into a .elm model file, by running\n"
    "`python3 -m elm.convert official`. torch is not needed.\n"
    "\n"
    "environment:\n"
    "  ELM_PYTHON      the Python interpreter (default /usr/bin/python3, else\n"
    "                  python3 on PATH)\n"
    "  ELM_PYTHONPATH  where the package `elm` lives (default: the source tree's\n"
    "                  bindings/python, else " ELM_PYTHON_DIR ")\n";

/* The single .pt/.pth file of a folder, malloc'ed; NULL after a message. */
static char *checkpoint_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        cli_error("cannot read the folder '%s': %s", dir, strerror(errno));
        return NULL;
    }
    char *found = NULL;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!cli_has_suffix(e->d_name, ".pt") && !cli_has_suffix(e->d_name, ".pth")) continue;
        if (++count == 1) found = cli_join(dir, e->d_name);
    }
    closedir(d);
    if (count != 1) {
        free(found);
        cli_error("'%s' holds %d checkpoints (.pt or .pth); name the one to convert", dir, count);
        return NULL;
    }
    if (!found) cli_error("out of memory");
    return found;
}

static int has_package(const char *dir) {
    if (!dir || !*dir) return 0;
    char *p = cli_join(dir, "elm/convert.py");
    int ok = p && access(p, R_OK) == 0;
    free(p);
    return ok;
}

/* Runs argv with PYTHONPATH = pypath (+ the caller's); its exit status, or
 * -1 after a message. */
static int run_python(char *const *args, const char *pypath) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        const char *old = getenv("PYTHONPATH");
        size_t n = strlen(pypath) + (old ? strlen(old) : 0) + 2;
        char *pp = malloc(n);
        if (!pp) _exit(127);
        snprintf(pp, n, "%s%s%s", pypath, old && *old ? ":" : "", old && *old ? old : "");
        if (setenv("PYTHONPATH", pp, 1) != 0) _exit(127);
        execvp(args[0], args);
        fprintf(stderr, "elm: cannot run the Python interpreter '%s': %s\n"
                        "elm: install Python 3 or set ELM_PYTHON to one\n",
                args[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            cli_error("waitpid: %s", strerror(errno));
            return -1;
        }
    }
    if (WIFSIGNALED(status)) {
        cli_error("the converter was killed by signal %d", WTERMSIG(status));
        return -1;
    }
    return WEXITSTATUS(status);
}

int cmd_convert(int argc, char **argv) {
    static const cli_opt opts[] = {{"config", 0, 1}};
    const char *opt[1], *pos[2];
    size_t n_pos;
    int st = cli_parse_args("convert", argc, argv, opts, 1, opt, pos, 2, &n_pos);
    if (st < 0) {
        fputs(help, stdout);
        return CLI_OK;
    }
    if (st) return st;
    if (n_pos != 2) return cli_usage_error("convert", "expected OFFICIAL (.pt or folder) and OUT.elm");

    const char *pypath = getenv("ELM_PYTHONPATH");
    if (!pypath || !*pypath) {
        pypath = has_package(ELM_PYTHON_SOURCE_DIR) ? ELM_PYTHON_SOURCE_DIR
                 : has_package(ELM_PYTHON_DIR)      ? ELM_PYTHON_DIR
                                                    : NULL;
        if (!pypath)
            return cli_error("the Python package 'elm' (elm/convert.py) is in neither '%s' nor "
                             "'%s'; set ELM_PYTHONPATH to the folder holding it",
                             ELM_PYTHON_SOURCE_DIR, ELM_PYTHON_DIR);
    }
    const char *python = getenv("ELM_PYTHON");
    if (!python || !*python) python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";

    struct stat sb;
    if (stat(pos[0], &sb) != 0) return cli_error("'%s': %s", pos[0], strerror(errno));
    char *pt = S_ISDIR(sb.st_mode) ? checkpoint_in(pos[0]) : strdup(pos[0]);
    if (!pt) return CLI_FAIL;

    char *args[10];
    int n = 0;
    args[n++] = (char *)python;
    args[n++] = "-m";
    args[n++] = "elm.convert";
    args[n++] = "official";
    args[n++] = pt;
    if (opt[0]) {
        args[n++] = "--config";
        args[n++] = (char *)opt[0];
    }
    args[n++] = "-o";
    args[n++] = (char *)pos[1];
    args[n] = NULL;
    int status = run_python(args, pypath);
    free(pt);
    if (status < 0) return CLI_FAIL;
    if (status == 127) return CLI_FAIL;
    if (status != 0)
        return cli_error("the converter (%s -m elm.convert, PYTHONPATH %s) failed with status %d",
                         python, pypath, status);

    /* The file must load in this libelm, not only in the Python writer. */
    elm_model *m;
    int rc = elm_model_load(pos[1], &m);
    if (rc) return cli_lib_error("the converted model does not load", rc);
    size_t trainable = 0;
    rc = elm_model_size(m, ELM_SIZE_TRAINABLE, &trainable);
    elm_model_free(m);
    if (rc) return cli_lib_error("model size", rc);
    printf("%s: %zu trainable parameters\n", pos[1], trainable);
    return CLI_OK;
}
