#!/usr/bin/env bash
# Start a PulseAudio null sink so that ttag's playback tests have a real-time audio device (see
# shared/notes/audio-playback.md). Installs nothing; needs the Debian packages
#   libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins   (apt-get install --no-install-recommends)
# Source it (`. .ci/pulse.sh`) so that XDG_RUNTIME_DIR reaches the tests; `.ci/pulse.sh stop` ends the server.
set -u

if [ "${1:-}" = "stop" ]; then
    if [ -n "${TTAG_PULSE_PID:-}" ]; then kill "$TTAG_PULSE_PID" 2>/dev/null; fi
    return 0 2>/dev/null || exit 0
fi

if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d /tmp/ttag-pulse-XXXXXX)"
    chmod 700 "$XDG_RUNTIME_DIR"
    export XDG_RUNTIME_DIR
fi

pulseaudio -n --daemonize=no --exit-idle-time=-1 --disallow-exit --use-pid-file=no --disable-shm=yes \
    -L "module-null-sink sink_name=nullsink rate=48000 norewinds=1" \
    -L module-native-protocol-unix >"$XDG_RUNTIME_DIR/pulseaudio.log" 2>&1 &
TTAG_PULSE_PID=$!
export TTAG_PULSE_PID

for _ in $(seq 1 100); do
    if pactl info >/dev/null 2>&1; then
        pactl set-default-sink nullsink
        echo "pulse.sh: null sink ready (pid $TTAG_PULSE_PID, XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR)" >&2
        return 0 2>/dev/null || exit 0
    fi
    sleep 0.1
done
echo "pulse.sh: PulseAudio did not start; see $XDG_RUNTIME_DIR/pulseaudio.log" >&2
return 1 2>/dev/null || exit 1
