/* upload: uploads the files named on the command line, prints progress once
 * a second and a report per file, and exits non-zero when the job failed.
 *
 *   upload -o endpoint=http://127.0.0.1:9000 -o bucket=photos \
 *          [-o key=value]... [-p key-prefix] [-v] FILE...
 *
 * -o sets any bp_config_set option (credentials default to the
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment variables); each
 * file uploads to key-prefix + its base name. -v prints the library's log
 * (debug level) to stderr, read with bp_log_next while the job runs.
 * Exit status: 0 succeeded, 1 the job failed, 2 bad usage or setup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchput.h"
#include "common.h"

#define MIB (1024.0 * 1024.0)

int main(int argc, char **argv)
{
    const char *prefix = "";
    int verbose = 0;
    bp_config *cfg = NULL;
    bp_uploader *up = NULL;
    bp_batch *batch = NULL;
    bp_job *job = NULL;
    bp_progress p;
    bp_status st;
    int i, files = 0, rc = 2;
    char key[4096], msg[1024];

    if (bp_version_number() != BATCHPUT_VERSION_NUMBER) {
        fprintf(stderr, "upload: built against batchput %s but loaded %s\n", BATCHPUT_VERSION,
                bp_version());
        return 2;
    }
    cfg = bp_config_new();
    batch = bp_batch_new();
    if (cfg == NULL || batch == NULL)
        goto out;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            if (set_option("upload", cfg, argv[++i]) != 0)
                goto out;
        } else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
            prefix = argv[++i];
        } else if (strcmp(argv[i], "-v") == 0) {
            verbose = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: upload [-o key=value]... [-p key-prefix] [-v] FILE...\n");
            goto out;
        } else {
            if ((size_t)snprintf(key, sizeof key, "%s%s", prefix, base_name(argv[i])) >=
                sizeof key) {
                fprintf(stderr, "upload: key for %s is too long\n", argv[i]);
                goto out;
            }
            st = bp_batch_add(batch, argv[i], key);
            if (st != BP_OK) {
                print_error("upload", "cannot add a file", st);
                goto out;
            }
            files++;
        }
    }
    if (files == 0) {
        fprintf(stderr, "usage: upload [-o key=value]... [-p key-prefix] [-v] FILE...\n");
        goto out;
    }
    if (verbose) {
        st = bp_set_log_level(BP_LOG_DEBUG);
        if (st != BP_OK) {
            print_error("upload", "cannot turn the log on", st);
            goto out;
        }
    }
    /* Every bp_job_poll below fills p up to this size. */
    p.struct_size = sizeof p;
    st = bp_uploader_new(cfg, &up);
    if (st != BP_OK) {
        print_error("upload", "cannot make the uploader", st);
        goto out;
    }
    st = bp_start(up, batch, &job);
    if (st != BP_OK) {
        print_error("upload", "cannot start", st);
        goto out;
    }
    printf("batchput %s: uploading %d files\n", bp_version(), files);

    /* Progress once a second: wait returns BP_PENDING while the job runs. */
    while (bp_job_wait(job, 1000) == BP_PENDING) {
        if (verbose)
            print_log();
        if (bp_job_poll(job, &p) != BP_OK)
            break;
        printf("[%5.1fs] %s  %llu/%llu parts  %.1f/%.1f MiB (%.1f MiB sent)  %.1f MiB/s\n",
               (double)p.elapsed_ms / 1000.0, job_state_name(p.state),
               (unsigned long long)p.parts_done, (unsigned long long)p.parts_total,
               (double)p.bytes_done / MIB, (double)p.bytes_total / MIB,
               (double)p.bytes_sent / MIB, p.speed_bps / MIB);
        fflush(stdout);
    }
    if (verbose)
        print_log();
    if (bp_job_poll(job, &p) != BP_OK) {
        print_error("upload", "cannot poll", BP_INTERNAL);
        goto out;
    }
    printf("%s: %llu of %llu files, %.1f MiB in %.1f s, average %.1f MiB/s\n",
           job_state_name(p.state), (unsigned long long)p.files_done,
           (unsigned long long)p.files_total, (double)p.bytes_done / MIB,
           (double)p.elapsed_ms / 1000.0, p.avg_speed_bps / MIB);
    print_reports(job);
    if (p.state == BP_JOB_SUCCEEDED) {
        rc = 0;
    } else {
        bp_job_last_error(job, msg, sizeof msg, NULL);
        fprintf(stderr, "upload: %s (%s)\n", msg, bp_status_str(p.error));
        rc = 1;
    }
out:
    bp_job_free(job);
    bp_uploader_free(up);
    bp_batch_free(batch);
    bp_config_free(cfg);
    return rc;
}
