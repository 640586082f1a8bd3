# dibr_debian_codename SUITE: the codename Debian's `stable` (or
# `oldstable`) is today, for 10-debian-minimal.bash. DIB's debian-minimal
# defaults to DIB_RELEASE=stable and writes `stable` into the image's
# sources; dibr resolves it once per build instead, so the bootstrap cache
# key and the image's apt sources name one release.
#
# The answer comes from the `Codename:` field of the mirror's
# dists/SUITE/InRelease (Debian's repository format, "Release files"),
# fetched with apt's own apt-helper (mmdebstrap needs apt, so the build
# machine has it) and checked with gpgv against the Debian archive keyring
# when the machine has one. It is kept in DIB_IMAGE_CACHE for
# DIB_DEBIAN_CACHE_HOURS (24, as the bootstrap cache); with DIB_OFFLINE, or
# when the mirror cannot be read, the last answer is used with a warning.
# The first phase of the build (root.d, outside the chroot) writes it
# beside the hooks, where every later phase, in the chroot too
# (/tmp/in_target.d), reads it: one answer per build.

_dibr_debian_fetch_codename() {
    local url="$1/dists/$2/InRelease" tmp keyring c
    tmp=$(mktemp -d) || return 1
    # Outside dibr's fakeroot preload: apt-helper is an ordinary download.
    if ! env -u LD_PRELOAD -u LD_LIBRARY_PATH -u FAKEROOTKEY -u FAKED_MODE \
        /usr/lib/apt/apt-helper -o APT::Sandbox::User=root \
        download-file "$url" "$tmp/InRelease" >"$tmp/log" 2>&1; then
        echo "dibr: debian-minimal: could not read $url: $(tail -n1 "$tmp/log")" >&2
        rm -rf "$tmp"
        return 1
    fi
    keyring=${DIB_APT_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
    if command -v gpgv >/dev/null && [ -f "$keyring" ]; then
        if ! gpgv --keyring "$keyring" --output "$tmp/Release" "$tmp/InRelease" >"$tmp/log" 2>&1; then
            echo "dibr: debian-minimal: $url is not signed by a key in $keyring: $(tail -n1 "$tmp/log")" >&2
            rm -rf "$tmp"
            return 1
        fi
    else
        echo "dibr: debian-minimal: warning: no gpgv or no $keyring: $url read unverified (mmdebstrap still verifies the release it bootstraps)" >&2
        cp "$tmp/InRelease" "$tmp/Release"
    fi
    c=$(sed -n 's/^Codename: *//p' "$tmp/Release" | head -n1)
    rm -rf "$tmp"
    [ -n "$c" ] || { echo "dibr: debian-minimal: $url has no Codename: field" >&2; return 1; }
    echo "$c"
}

dibr_debian_codename() {
    local suite=$1 mirror=${DIB_DISTRIBUTION_MIRROR:-http://deb.debian.org/debian}
    local record="" cache key c how
    if [ -n "${TMP_HOOKS_PATH:-}" ]; then
        record=$TMP_HOOKS_PATH/.dibr-debian-$suite
        if [ -s "$record" ]; then
            cat "$record"
            return 0
        fi
    fi
    key=$(printf '%s\n' "$mirror" | sha256sum | cut -c1-16)
    cache=${DIB_IMAGE_CACHE:-$HOME/.cache/dibr}/debian-minimal/$suite-$key.codename
    if [ -s "$cache" ] && { [ -n "${DIB_OFFLINE:-}" ] ||
        [ -z "$(find "$cache" -mmin +$((60 * ${DIB_DEBIAN_CACHE_HOURS:-24})))" ]; }; then
        c=$(cat "$cache")
        how="cached in $cache"
    elif [ -n "${DIB_OFFLINE:-}" ]; then
        echo "dibr: debian-minimal: DIB_OFFLINE is set and which release '$suite' is has never been read from $mirror ($cache): set DIB_RELEASE to a codename (e.g. DIB_RELEASE=trixie) or build once online" >&2
        return 1
    elif c=$(_dibr_debian_fetch_codename "$mirror" "$suite"); then
        how="from $mirror/dists/$suite/InRelease"
        mkdir -p "${cache%/*}" && echo "$c" > "$cache.part" && mv "$cache.part" "$cache" ||
            echo "dibr: debian-minimal: warning: could not write $cache" >&2
    elif [ -s "$cache" ]; then
        c=$(cat "$cache")
        how="the last known answer, $cache of $(date -r "$cache" -u '+%F %H:%M UTC')"
        echo "dibr: debian-minimal: warning: the mirror could not say which release '$suite' is: using $how" >&2
    else
        echo "dibr: debian-minimal: cannot tell which release DIB_RELEASE=$suite is (no answer from $mirror, none cached): set DIB_RELEASE to a codename (e.g. DIB_RELEASE=trixie) or DIB_DISTRIBUTION_MIRROR to a reachable mirror" >&2
        return 1
    fi
    if ! [[ "$c" =~ ^[a-z][a-z0-9-]*$ ]]; then
        echo "dibr: debian-minimal: '$c' (DIB_RELEASE=$suite, $how) is not a Debian codename" >&2
        return 1
    fi
    echo "dibr: debian-minimal: DIB_RELEASE=$suite is $c ($how)" >&2
    if [ -n "$record" ]; then
        echo "$c" > "$record" 2>/dev/null || true
    fi
    echo "$c"
}
