# gitexp: completion of `git exp ...` and `gitexp ...` for bash.
# Load it from ~/.bashrc with `source <(git exp completion bash)`, or once for all shells:
#   git exp completion bash > ~/.local/share/bash-completion/completions/git-exp
# git's own completion (bash-completion) calls _git_exp for `git exp`.

__gitexp_complete() {  # the words after `exp`, the last one under the cursor
    local IFS=$'\n'
    COMPREPLY=($(_GITEXP_COMPLETE=bash command git-exp "$@" 2>/dev/null))
}

_git_exp() {  # called by git's completion, which sets `words` and `cword`
    local i
    for ((i = 1; i < cword; i++)); do
        [[ ${words[i]} == exp ]] && break
    done
    __gitexp_complete "${words[@]:i+1:cword-i}"
}

_gitexp() {
    __gitexp_complete "${COMP_WORDS[@]:1:COMP_CWORD}"
}

complete -o default -F _gitexp gitexp git-exp
