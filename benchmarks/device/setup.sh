# Sourced by the device scripts (NAME set first): results go to /tmp/$NAME, tarred into
# $OUT/$NAME.tgz on exit; the wheels in .whl/ (array-api-compat, fla-core, dask, ...) installed.
FINAL=${OUT:-/tmp/out}; OUT=/tmp/$NAME; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/$NAME.tgz" -C /tmp "$NAME"' EXIT
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# a batch of scripts installs once (the marker) so concurrent scripts do not race on /tmp/site
if [ ! -e /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      > "$OUT/log_pip.txt" 2>&1 && touch /tmp/site/.installed
fi
export PYTHONPATH=/tmp/site:$PWD
