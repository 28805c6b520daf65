/* sigpipe: a host that keeps SIGPIPE at its default action, as C services
 * do, uploads one file and reports how the job ended. If the library let a
 * SIGPIPE through (a server that answers early and closes while a body is
 * still being sent), the process would die of it instead of reporting.
 *
 *   sigpipe -o endpoint=... -o bucket=... [-o key=value]... -k key FILE
 *   sigpipe -c
 *
 * -c is the control: a second thread writes to a socket whose peer has
 * closed, without MSG_NOSIGNAL, and the process dies of SIGPIPE, as the
 * library's threads would without their guard.
 * Exit status: 0 the job ended (its state and error printed), 2 bad usage
 * or setup, 3 the control survived its SIGPIPE. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "batchput.h"
#include "common.h"

/* Whatever the parent left: SIGPIPE at its default action (terminate) and
 * not blocked. The library's threads inherit the mask of this thread. */
static int default_sigpipe(void)
{
    sigset_t set;
    if (signal(SIGPIPE, SIG_DFL) == SIG_ERR || sigemptyset(&set) != 0 ||
        sigaddset(&set, SIGPIPE) != 0 || pthread_sigmask(SIG_UNBLOCK, &set, NULL) != 0)
        return -1;
    return 0;
}

static void *write_to_closed_peer(void *arg)
{
    int fd = *(int *)arg;
    /* Raises SIGPIPE in this thread: the process ends here. */
    if (write(fd, "x", 1) < 0)
        perror("sigpipe: write");
    return NULL;
}

static int control(void)
{
    int fds[2];
    pthread_t thread;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
        perror("sigpipe: socketpair");
        return 2;
    }
    close(fds[1]);
    if (pthread_create(&thread, NULL, write_to_closed_peer, &fds[0]) != 0)
        return 2;
    pthread_join(thread, NULL);
    fprintf(stderr, "sigpipe: the control survived its SIGPIPE\n");
    return 3;
}

int main(int argc, char **argv)
{
    const char *key = NULL, *path = NULL;
    bp_config *cfg = NULL;
    bp_uploader *up = NULL;
    bp_batch *batch = NULL;
    bp_job *job = NULL;
    bp_progress p;
    bp_status st;
    int i, rc = 2;
    char msg[1024];

    if (default_sigpipe() != 0) {
        perror("sigpipe: cannot reset SIGPIPE");
        return 2;
    }
    if (argc == 2 && strcmp(argv[1], "-c") == 0)
        return control();
    cfg = bp_config_new();
    batch = bp_batch_new();
    if (cfg == NULL || batch == NULL)
        goto out;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            if (set_option("sigpipe", cfg, argv[++i]) != 0)
                goto out;
        } else if (strcmp(argv[i], "-k") == 0 && i + 1 < argc) {
            key = argv[++i];
        } else if (argv[i][0] != '-' && path == NULL) {
            path = argv[i];
        } else {
            path = NULL;
            break;
        }
    }
    if (key == NULL || path == NULL) {
        fprintf(stderr, "usage: sigpipe [-o key=value]... -k key FILE | sigpipe -c\n");
        goto out;
    }
    st = bp_batch_add(batch, path, key);
    if (st == BP_OK)
        st = bp_uploader_new(cfg, &up);
    if (st == BP_OK)
        st = bp_start(up, batch, &job);
    if (st != BP_OK) {
        print_error("sigpipe", "cannot start", st);
        goto out;
    }
    p.struct_size = sizeof p;
    if (bp_job_wait(job, BP_WAIT_FOREVER) != BP_OK || bp_job_poll(job, &p) != BP_OK) {
        print_error("sigpipe", "cannot wait", BP_INTERNAL);
        goto out;
    }
    bp_job_last_error(job, msg, sizeof msg, NULL);
    printf("job %s (%s): %s\n", job_state_name(p.state), bp_status_str(p.error), msg);
    printf("%llu of %llu bytes sent\n", (unsigned long long)p.bytes_sent,
           (unsigned long long)p.bytes_total);
    rc = 0;
out:
    bp_job_free(job);
    bp_uploader_free(up);
    bp_batch_free(batch);
    bp_config_free(cfg);
    return rc;
}
