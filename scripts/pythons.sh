#!/usr/bin/env bash
# Prints "VERSION PATH" for every CPython among 3.11, 3.12 and 3.13 found on
# this machine: pyenv's installs first, then the PATH. Used by `make test`.
set -u
for version in 3.11 3.12 3.13; do
  found=""
  root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
  if [ -d "$root/versions" ]; then
    for candidate in $(ls -d "$root"/versions/"$version".* 2>/dev/null | sort -V -r); do
      if [ -x "$candidate/bin/python$version" ]; then
        found="$candidate/bin/python$version"
        break
      fi
    done
  fi
  if [ -z "$found" ] && command -v "python$version" >/dev/null 2>&1; then
    found=$(command -v "python$version")
  fi
  if [ -n "$found" ] && "$found" -c 'import sys, venv' >/dev/null 2>&1; then
    echo "$version $found"
  fi
done
