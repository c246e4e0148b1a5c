/* spin: loop forever in ring 3 without a syscall (argv[1] == "sleep": sleep forever instead). */
#include "common.h"
#include <time.h>

int main(int argc, char **argv) {
    printf("spinning\n");
    fflush(stdout);
    if (argc > 1 && !strcmp(argv[1], "sleep")) {
        struct timespec ts = {100000, 0};
        for (;;) nanosleep(&ts, NULL);
    }
    if (argc > 1 && !strcmp(argv[1], "stdin")) {
        char c;
        for (;;) if (read(0, &c, 1) <= 0) pause();
    }
    for (volatile unsigned long i = 0;; i++) {}
}
