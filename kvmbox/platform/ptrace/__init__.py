"""The ptrace platform: guest threads run in Sentry-made host stub processes under PTRACE_SYSEMU."""
