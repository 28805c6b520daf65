/* stop: starts uploading the files named on the command line, stops the job
 * from a second thread after a moment, and shows that every upload was
 * aborted: no file completed, every started one reports "aborted".
 *
 *   stop -o endpoint=... -o bucket=... [-o key=value]... [-p key-prefix]
 *        [-d delay-ms] FILE...
 *
 * The files must take longer than the delay (default 300 ms) to upload: use
 * big files or -o rate_limit=1MiB.
 * Exit status: 0 stopped with every upload aborted, 1 otherwise, 2 bad
 * usage or setup. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchput.h"
#include "common.h"

struct stopper {
    bp_job *job;
    long delay_ms;
    bp_status first, second;
};

/* The second thread: sleeps, then stops the job twice (stop is idempotent)
 * while the main thread is blocked in bp_job_wait. */
static void *stop_later(void *arg)
{
    struct stopper *s = arg;
    struct timespec ts;
    ts.tv_sec = s->delay_ms / 1000;
    ts.tv_nsec = (s->delay_ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
    s->first = bp_job_stop(s->job);
    s->second = bp_job_stop(s->job);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *prefix = "";
    bp_config *cfg = NULL;
    bp_uploader *up = NULL;
    bp_batch *batch = NULL;
    bp_job *job = NULL;
    bp_progress p;
    bp_status st;
    pthread_t thread;
    struct stopper stopper;
    size_t i, n, bad = 0;
    int a, files = 0, rc = 2;
    char key[4096], msg[1024];

    stopper.delay_ms = 300;
    cfg = bp_config_new();
    batch = bp_batch_new();
    if (cfg == NULL || batch == NULL)
        goto out;
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-o") == 0 && a + 1 < argc) {
            if (set_option("stop", cfg, argv[++a]) != 0)
                goto out;
        } else if (strcmp(argv[a], "-p") == 0 && a + 1 < argc) {
            prefix = argv[++a];
        } else if (strcmp(argv[a], "-d") == 0 && a + 1 < argc) {
            stopper.delay_ms = atol(argv[++a]);
        } else if (argv[a][0] == '-') {
            fprintf(stderr, "usage: stop [-o key=value]... [-p key-prefix] [-d ms] FILE...\n");
            goto out;
        } else {
            if ((size_t)snprintf(key, sizeof key, "%s%s", prefix, base_name(argv[a])) >=
                sizeof key) {
                fprintf(stderr, "stop: key for %s is too long\n", argv[a]);
                goto out;
            }
            st = bp_batch_add(batch, argv[a], key);
            if (st != BP_OK) {
                print_error("stop", "cannot add a file", st);
                goto out;
            }
            files++;
        }
    }
    if (files == 0) {
        fprintf(stderr, "usage: stop [-o key=value]... [-p key-prefix] [-d ms] FILE...\n");
        goto out;
    }
    st = bp_uploader_new(cfg, &up);
    if (st == BP_OK)
        st = bp_start(up, batch, &job);
    if (st != BP_OK) {
        print_error("stop", "cannot start", st);
        goto out;
    }
    p.struct_size = sizeof p;
    stopper.job = job;
    stopper.first = stopper.second = BP_INTERNAL;
    if (pthread_create(&thread, NULL, stop_later, &stopper) != 0) {
        fprintf(stderr, "stop: cannot start a thread\n");
        goto out;
    }
    /* Block here until the job ends; the other thread stops it. */
    st = bp_job_wait(job, BP_WAIT_FOREVER);
    pthread_join(thread, NULL);
    if (st != BP_OK || bp_job_poll(job, &p) != BP_OK) {
        print_error("stop", "cannot wait", st);
        goto out;
    }
    bp_job_last_error(job, msg, sizeof msg, NULL);
    printf("job %s after %.1f s: %s\n", job_state_name(p.state), (double)p.elapsed_ms / 1000.0,
           msg);
    printf("stop returned %s, then %s\n", bp_status_str(stopper.first),
           bp_status_str(stopper.second));
    print_reports(job);

    rc = 0;
    if (p.state != BP_JOB_STOPPED || stopper.first != BP_OK || stopper.second != BP_OK) {
        fprintf(stderr, "stop: the job was not stopped (it may have finished first)\n");
        rc = 1;
    }
    n = bp_job_file_count(job);
    for (i = 0; i < n; i++) {
        bp_file_report r;
        r.struct_size = sizeof r;
        if (bp_job_file(job, i, &r) != BP_OK ||
            (r.state != BP_FILE_ABORTED && r.state != BP_FILE_NOT_STARTED))
            bad++;
    }
    if (bad > 0) {
        fprintf(stderr, "stop: %lu files were not aborted\n", (unsigned long)bad);
        rc = 1;
    } else if (rc == 0) {
        printf("every upload was aborted\n");
    }
out:
    bp_job_free(job);
    bp_uploader_free(up);
    bp_batch_free(batch);
    bp_config_free(cfg);
    return rc;
}
