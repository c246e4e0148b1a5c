/*
 * Reading /proc/self/maps from the test programs: call fn(lo, hi, rest-of-line,
 * ctx) for each mapping, in address order.
 */
#ifndef KVMBOX_TEST_MAPS_H
#define KVMBOX_TEST_MAPS_H
#include <stdio.h>
#include <string.h>

typedef void (*map_fn)(unsigned long lo, unsigned long hi, const char *rest, void *ctx);

static __attribute__((unused)) void maps_each(map_fn fn, void *ctx)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            fn(lo, hi, line + strcspn(line, " "), ctx);
    }
    if (f)
        fclose(f);
}

#endif
