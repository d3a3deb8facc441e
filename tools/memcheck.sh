#!/usr/bin/env bash
# `make memcheck`: the core and pyOpenSSL tests under valgrind memcheck, in
# both pyOpenSSL worlds.
#
#   1. Debian's python3 (.venv-debian, the "same-libssl" route): the
#      interpreter, the standard library, pyOpenSSL and openssl-ccb all run on
#      the system libssl. Strict: any invalid read, write or free, any use of
#      uninitialised memory fails, as does any leak attributed to openssl-ccb.
#   2. .venv (pip's wheels, the "bundled" route), the pyOpenSSL tests: fails on
#      errors whose stack passes through openssl-ccb or the system OpenSSL and
#      on leaks attributed to openssl-ccb. (Not strict: some interpreter builds
#      report their own false positives, e.g. CPython 3.11.7's int.from_bytes.)
#
# Reports go to build/memcheck/; tools/memcheck_report.py judges them. The
# tests that wait for the allocator to reuse a freed context's address are
# left out: valgrind holds freed blocks back precisely to catch use after free.
set -euo pipefail
cd "$(dirname "$0")/.."

CORE=(tests/test_raw.py tests/test_stdlib.py tests/test_returns.py tests/test_lifetime.py
      tests/test_contexts.py tests/test_selection.py tests/test_pyopenssl.py
      tests/test_post_handshake.py tests/test_answers.py tests/test_stdlib_hardening.py
      tests/test_signer.py tests/test_choice.py)
OUT=build/memcheck
rm -rf "$OUT"
mkdir -p "$OUT"

run() {  # run NAME PYTHON [python flags] -- TESTS...
    local name=$1 python=$2
    shift 2
    local flags=()
    while [ "$1" != "--" ]; do flags+=("$1"); shift; done
    shift
    echo "== memcheck: $name ($python)"
    PYTHONMALLOC=malloc valgrind --tool=memcheck --quiet \
        --leak-check=full --show-leak-kinds=definite,indirect \
        --num-callers=40 --suppressions=tools/valgrind.supp --child-silent-after-fork=yes \
        --xml=yes --xml-file="$OUT/$name.%p.xml" \
        "$python" "${flags[@]}" -m pytest -q -p no:cacheprovider -k "not reused_address" "$@"
}

status=0
run same-libssl .venv-debian/bin/python -P -- "${CORE[@]}" || status=1
python3 tools/memcheck_report.py --strict "$OUT"/same-libssl.*.xml || status=1

# A key on a SoftHSM2 token, signing through PyKCS11 (the handshakes only: the
# token's key generation under valgrind would take minutes).
run pkcs11 .venv-debian/bin/python -P -- tests/test_pkcs11.py -k "handshake_signed_on_the_token and (p256 or rsa)" || status=1
python3 tools/memcheck_report.py --strict "$OUT"/pkcs11.*.xml || status=1

run bundled .venv/bin/python -- tests/test_pyopenssl.py tests/test_post_handshake.py || status=1
python3 tools/memcheck_report.py "$OUT"/bundled.*.xml || status=1
exit $status
