# gitexp: completion of `git exp ...` and `gitexp ...` for zsh.
# Save it (`git exp completion zsh > ~/.gitexp.zsh`) and source it from ~/.zshrc after
# compinit. zsh's own git completion calls _git-exp for `git exp`.

_git-exp() {  # words[1] is `exp` (or the command's name), CURRENT the word under the cursor
    local -a found
    found=("${(@f)$(_GITEXP_COMPLETE=zsh command git-exp "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    found=(${found:#})
    (( ${#found} )) && _describe -t gitexp 'git exp' found
}

_gitexp() { _git-exp "$@" }

if (( $+functions[compdef] )); then
    compdef _gitexp gitexp git-exp
fi
