/* N small write(2)s of 16 bytes to stdout. Prints a final "writes N done". */
#include "bench.h"
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = arg_count(argc, argv, 10000);
    static const char line[] = "0123456789abcde\n";
    long bad = 0;
    for (long i = 0; i < n; i++)
        bad += write(1, line, 16) != 16;
    char msg[64];
    int len = snprintf(msg, sizeof msg, "writes %ld done%s\n", n, bad ? " (SHORT)" : "");
    if (write(1, msg, len) != len)
        bad++;
    return bad ? 1 : 0;
}
