/* Helpers shared by the examples: option parsing, error and log printing.
 * Not part of batchput's API. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchput.h"

/* Prints "<prog>: <what>: <last error> (<status text>)" to stderr. */
static inline void print_error(const char *prog, const char *what, bp_status status)
{
    char msg[1024];
    size_t full = 0;
    if (bp_last_error(msg, sizeof msg, &full) != BP_OK)
        msg[0] = '\0';
    fprintf(stderr, "%s: %s: %s (%s)%s\n", prog, what, msg, bp_status_str(status),
            full >= sizeof msg ? " [message cut]" : "");
}

/* Sets "key=value" on cfg; returns 0, or prints why not and returns -1. */
static inline int set_option(const char *prog, bp_config *cfg, const char *pair)
{
    const char *eq = strchr(pair, '=');
    char key[128];
    bp_status st;
    if (eq == NULL || (size_t)(eq - pair) >= sizeof key) {
        fprintf(stderr, "%s: -o wants key=value, got '%s'\n", prog, pair);
        return -1;
    }
    memcpy(key, pair, (size_t)(eq - pair));
    key[eq - pair] = '\0';
    st = bp_config_set(cfg, key, eq + 1);
    if (st != BP_OK) {
        print_error(prog, "bad option", st);
        return -1;
    }
    return 0;
}

/* The last path component of path. */
static inline const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* States are uint32_t: a switch needs a default for values a newer
 * library may add. */
static inline const char *file_state_name(bp_file_state s)
{
    switch (s) {
    case BP_FILE_NOT_STARTED: return "not started";
    case BP_FILE_RUNNING: return "running";
    case BP_FILE_COMPLETED: return "completed";
    case BP_FILE_FAILED: return "failed";
    case BP_FILE_ABORTED: return "aborted";
    case BP_FILE_PAUSED: return "paused";
    case BP_FILE_ABORT_FAILED: return "abort-failed";
    case BP_FILE_UNKNOWN: return "unknown";
    default: return "?";
    }
}

static inline const char *job_state_name(bp_job_state s)
{
    switch (s) {
    case BP_JOB_QUEUED: return "queued";
    case BP_JOB_RUNNING: return "running";
    case BP_JOB_SUCCEEDED: return "succeeded";
    case BP_JOB_FAILED: return "failed";
    case BP_JOB_STOPPED: return "stopped";
    case BP_JOB_PAUSED: return "paused";
    default: return "?";
    }
}

/* How a downloaded file was checked; "" for none (an upload, or a file not
 * complete). */
static inline const char *verified_name(bp_verified v)
{
    switch (v) {
    case BP_VERIFIED_NONE: return "";
    case BP_VERIFIED_MD5: return "md5";
    case BP_VERIFIED_MULTIPART_ETAG: return "multipart-etag";
    case BP_VERIFIED_SIZE: return "size";
    case BP_VERIFIED_CRC32C: return "crc32c";
    default: return "?";
    }
}

/* Prints one line per file of the job; an upload left open on the server
 * (BP_FILE_ABORT_FAILED) is named by its upload id. */
static inline void print_reports(const bp_job *job)
{
    size_t i, n = bp_job_file_count(job);
    for (i = 0; i < n; i++) {
        bp_file_report r;
        r.struct_size = sizeof r;
        if (bp_job_file(job, i, &r) != BP_OK)
            continue;
        printf("  %-11s %s -> %s  %llu/%llu bytes%s%s%s%s%s%s\n", file_state_name(r.state),
               r.path, r.key, (unsigned long long)r.bytes_done, (unsigned long long)r.size,
               r.etag ? "  etag " : "", r.etag ? r.etag : "",
               r.upload_id && r.state == BP_FILE_ABORT_FAILED ? "  left open: upload id " : "",
               r.upload_id && r.state == BP_FILE_ABORT_FAILED ? r.upload_id : "",
               r.verified != BP_VERIFIED_NONE ? "  verified " : "", verified_name(r.verified));
    }
}

/* Prints every library log record waiting (bp_set_log_level turned them
 * on) to stderr, as "batchput[level]: target: message". */
static inline void print_log(void)
{
    static const char *const names[] = {"off", "error", "warn", "info", "debug", "trace"};
    char text[2048];
    size_t full = 0;
    uint32_t level = 0;
    while (bp_log_next(&level, text, sizeof text, &full) == BP_OK)
        fprintf(stderr, "batchput[%s]: %s%s\n", level <= BP_LOG_TRACE ? names[level] : "?", text,
                full >= sizeof text ? " [cut]" : "");
}

#endif
