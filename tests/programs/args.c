/*
 * argv, envp and the auxiliary vector as the program sees them.
 * Prints argv[1..] verbatim, argv[0] and AT_EXECFN by basename, the
 * environment sorted, and derived facts about the auxv.
 */
#include "common.h"
#include <sys/auxv.h>

#ifndef AT_EXECFN
#define AT_EXECFN 31
#endif

static const char *base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

extern char **environ;

int main(int argc, char **argv)
{
    printf("argc %d\n", argc);
    printf("argv[0] basename %s\n", base(argv[0]));
    for (int i = 1; i < argc; i++)
        printf("argv[%d] [%s]\n", i, argv[i]);
    check(argv[argc] == NULL, "argv[argc] is NULL");

    int n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + 1) * sizeof *env);
    memcpy(env, environ, (n + 1) * sizeof *env);
    qsort(env, n, sizeof *env, cmp);
    printf("envc %d\n", n);
    for (int i = 0; i < n; i++)
        printf("env [%s]\n", env[i]);
    const char *v = getenv("KVMBOX_TEST_VAR");
    printf("KVMBOX_TEST_VAR %s\n", v ? v : "(unset)");

    printf("AT_PAGESZ %lu\n", getauxval(AT_PAGESZ));
    check(getauxval(AT_RANDOM) != 0, "AT_RANDOM present");
    check(getauxval(AT_PHDR) != 0, "AT_PHDR present");
    check(getauxval(AT_ENTRY) != 0, "AT_ENTRY present");
    printf("AT_PHENT %lu\n", getauxval(AT_PHENT));
    check(getauxval(AT_PHNUM) > 0, "AT_PHNUM > 0");
    printf("AT_SECURE %lu\n", getauxval(AT_SECURE));
    unsigned long fn = getauxval(AT_EXECFN);
    printf("AT_EXECFN basename %s\n", fn ? base((const char *)fn) : "(none)");
    printf("AT_UID==getuid %s\n", getauxval(AT_UID) == getuid() ? "yes" : "no");
    printf("AT_EUID==geteuid %s\n", getauxval(AT_EUID) == geteuid() ? "yes" : "no");
    free(env);
    return finish();
}
