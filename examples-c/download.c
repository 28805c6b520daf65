/* download: downloads objects into local files, through bp_download_start
 * (KEY=DEST pairs) or bp_download_prefix (-P PREFIX DIR), waits for the
 * job, prints a report per file (with how it was checked) and exits
 * non-zero when the job failed.
 *
 *   download -o endpoint=http://127.0.0.1:9000 -o bucket=photos \
 *            [-o key=value]... [-j JOURNAL] KEY=DEST...
 *   download -o ... [-j JOURNAL] -P PREFIX DIR
 *
 * Exit status: 0 succeeded, 1 the job failed or was refused, 2 bad usage or
 * setup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchput.h"
#include "common.h"

#define USAGE "usage: download [-o key=value]... [-j journal] (KEY=DEST... | -P PREFIX DIR)\n"

int main(int argc, char **argv)
{
    const char *prefix = NULL, *dir = NULL, *journal = NULL;
    bp_config *cfg = NULL;
    bp_uploader *up = NULL;
    bp_batch *batch = NULL;
    bp_job *job = NULL;
    bp_progress p;
    bp_status st;
    int i, pairs = 0, rc = 2;
    char key[4096], msg[1024];

    cfg = bp_config_new();
    batch = bp_batch_new();
    if (cfg == NULL || batch == NULL)
        goto out;
    for (i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            if (set_option("download", cfg, argv[++i]) != 0)
                goto out;
        } else if (strcmp(argv[i], "-j") == 0 && i + 1 < argc) {
            journal = argv[++i];
        } else if (strcmp(argv[i], "-P") == 0 && i + 2 < argc) {
            prefix = argv[++i];
            dir = argv[++i];
        } else if (argv[i][0] != '-' && eq != NULL && (size_t)(eq - argv[i]) < sizeof key) {
            /* KEY=DEST: the batch entry is (destination path, key). */
            memcpy(key, argv[i], (size_t)(eq - argv[i]));
            key[eq - argv[i]] = '\0';
            st = bp_batch_add(batch, eq + 1, key);
            if (st != BP_OK) {
                print_error("download", "cannot add an object", st);
                goto out;
            }
            pairs++;
        } else {
            fprintf(stderr, USAGE);
            goto out;
        }
    }
    if ((pairs == 0) == (prefix == NULL)) {
        fprintf(stderr, USAGE);
        goto out;
    }
    if (journal != NULL && prefix == NULL) {
        st = bp_batch_set_journal(batch, journal);
        if (st != BP_OK) {
            print_error("download", "bad journal", st);
            goto out;
        }
    }
    p.struct_size = sizeof p;
    st = bp_uploader_new(cfg, &up);
    if (st != BP_OK) {
        print_error("download", "cannot make the uploader", st);
        goto out;
    }
    if (prefix != NULL)
        st = bp_download_prefix(up, prefix, dir, journal, &job);
    else
        st = bp_download_start(up, batch, &job);
    if (st != BP_OK) {
        print_error("download", "cannot start", st);
        rc = 1;
        goto out;
    }
    if (bp_job_wait(job, BP_WAIT_FOREVER) != BP_OK || bp_job_poll(job, &p) != BP_OK) {
        print_error("download", "cannot wait", BP_INTERNAL);
        goto out;
    }
    printf("%s: %llu of %llu files, %llu bytes\n", job_state_name(p.state),
           (unsigned long long)p.files_done, (unsigned long long)p.files_total,
           (unsigned long long)p.bytes_done);
    print_reports(job);
    if (p.state == BP_JOB_SUCCEEDED) {
        rc = 0;
    } else {
        bp_job_last_error(job, msg, sizeof msg, NULL);
        fprintf(stderr, "download: %s (%s)\n", msg, bp_status_str(p.error));
        rc = 1;
    }
out:
    bp_job_free(job);
    bp_uploader_free(up);
    bp_batch_free(batch);
    bp_config_free(cfg);
    return rc;
}
