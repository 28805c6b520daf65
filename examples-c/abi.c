/* abi: prints the size of every type and the offset and size of every
 * field the header declares, one per line on stdout. Built twice by the
 * tests, with and without -fshort-enums: the two outputs must be the same
 * (no layout depends on the size of a C enum), and match Rust's layout.
 * On stderr it prints sizeof(enum bp_status), which -fshort-enums does
 * shrink: the typedef, not the enum, crosses the ABI.
 * Exit status: 0 when every status/state type is 4 bytes, 1 otherwise.
 * Needs only the header (no library). */
#include <stddef.h>
#include <stdio.h>

#include "batchput.h"

#define SIZE(T) printf("sizeof %s %lu\n", #T, (unsigned long)sizeof(T))
#define FIELD(T, f)                                                                             \
    printf("%s.%s %lu %lu\n", #T, #f, (unsigned long)offsetof(T, f),                          \
           (unsigned long)sizeof(((T *)0)->f))

int main(void)
{
    SIZE(bp_status);
    SIZE(bp_job_state);
    SIZE(bp_file_state);
    SIZE(bp_log_level);
    SIZE(bp_progress);
    FIELD(bp_progress, struct_size);
    FIELD(bp_progress, state);
    FIELD(bp_progress, error);
    FIELD(bp_progress, files_total);
    FIELD(bp_progress, files_done);
    FIELD(bp_progress, files_failed);
    FIELD(bp_progress, parts_total);
    FIELD(bp_progress, parts_done);
    FIELD(bp_progress, bytes_total);
    FIELD(bp_progress, bytes_done);
    FIELD(bp_progress, speed_bps);
    FIELD(bp_progress, avg_speed_bps);
    FIELD(bp_progress, peak_speed_bps);
    FIELD(bp_progress, elapsed_ms);
    FIELD(bp_progress, bytes_sent);
    FIELD(bp_progress, integrity_used);
    SIZE(bp_file_report);
    FIELD(bp_file_report, struct_size);
    FIELD(bp_file_report, path);
    FIELD(bp_file_report, key);
    FIELD(bp_file_report, etag);
    FIELD(bp_file_report, size);
    FIELD(bp_file_report, bytes_done);
    FIELD(bp_file_report, avg_speed_bps);
    FIELD(bp_file_report, peak_speed_bps);
    FIELD(bp_file_report, state);
    FIELD(bp_file_report, error);
    FIELD(bp_file_report, upload_id);
    FIELD(bp_file_report, verified);
    fprintf(stderr, "sizeof(enum bp_status) %lu\n", (unsigned long)sizeof(enum bp_status));
    return sizeof(bp_status) == 4 && sizeof(bp_job_state) == 4 && sizeof(bp_file_state) == 4 &&
                   sizeof(bp_log_level) == 4 && sizeof(bp_verified) == 4
               ? 0
               : 1;
}
