#!/bin/sh
# gitexp-hook v1
# Installed by `git exp hooks install`; `git exp hooks uninstall` removes it and puts back the
# hook that was here before (kept meanwhile as {{hook}}.gitexp-legacy, and still run first).
# It never blocks git: if the gitexp that installed it is gone, it says so in one line and
# lets the commit or push go on.
gitexp_hook={{hook}}
gitexp_python={{python}}
gitexp_impl={{impl}}
gitexp_legacy="$(dirname -- "$0")/$gitexp_hook.gitexp-legacy"

unset gitexp_input
if [ "$gitexp_hook" = pre-push ] || [ "$gitexp_hook" = post-rewrite ]; then
    # These hooks read their input on stdin: keep it for both the earlier hook and gitexp.
    gitexp_input=$(cat; echo x)
    gitexp_input=${gitexp_input%x}
fi

gitexp_feed() {
    if [ -n "${gitexp_input+set}" ]; then
        printf '%s' "$gitexp_input" | "$@"
    else
        "$@"
    fi
}

# The hook that was here before runs first, with git's environment untouched; its verdict
# stands (a failing pre-push or prepare-commit-msg hook still stops git).
if [ -x "$gitexp_legacy" ]; then
    gitexp_feed "$gitexp_legacy" "$@" || exit $?
fi

# Fast path: the callback by its path, without site-packages (gitexp.hooks.run needs only the
# standard library until it has something to do). It always exits 0.
if [ -x "$gitexp_python" ] && [ -f "$gitexp_impl" ]; then
    gitexp_feed "$gitexp_python" -S "$gitexp_impl" "$gitexp_hook" "$@"
    exit 0
fi

if [ ! -x "$gitexp_python" ]; then
    echo "gitexp: $gitexp_hook hook skipped: $gitexp_python is gone; reinstall gitexp and run \`git exp hooks install\` (or \`git exp hooks uninstall\`)" >&2
    exit 0
fi

# gitexp moved within that Python's site-packages, or is gone from it. Python drops the
# current directory from sys.path: the user's repository must never shadow gitexp.
gitexp_feed "$gitexp_python" -c '
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
try:
    from gitexp.hooks.run import main
except ImportError:
    sys.stderr.write("gitexp: %s hook skipped: gitexp is no longer installed in %s; "
                     "reinstall it and run `git exp hooks install` (or `git exp hooks uninstall`)\n"
                     % (sys.argv[1], sys.executable))
    sys.exit(0)
sys.exit(main(sys.argv[1:]))
' "$gitexp_hook" "$@"
exit 0
