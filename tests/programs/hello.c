/* The smallest program: one line through stdio, exit 0. */
#include <stdio.h>

int main(void)
{
    printf("hello from kvmbox test program\n");
    return 0;
}
