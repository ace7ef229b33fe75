"""Synthetic IMU windows from a small physical model: the embedded default dataset.

Why a physical model rather than labelled sine waves: the stages after training (INT8 calibration,
the NPU) see value ranges, cross-channel structure and drift like a real body-worn sensor, and the
classes overlap the way real behaviours do, so accuracy numbers are not trivially 100%.

Model, per window and sensor site (world frame ENU, z up; body frame x forward, y left, z up):
- The behaviour gives the body orientation (yaw, pitch, roll; R = Rz(yaw) Ry(pitch) Rx(roll), body to
  world) and the linear acceleration of the site in the heading frame, in g.
- The sensor sits on the body with a mounting rotation M (per subject and site), so sensor-to-world
  is R_ws = R M.
- accelerometer (g): specific force f_s = R_ws^T (a_world + [0, 0, 1]) -- gravity plus motion.
- gyroscope (rad/s): body rate in the sensor frame, omega = vee(R_ws^T dR_ws/dt) (central differences
  on the analytic orientation, one extra sample each side).
- magnetometer (uT): m_s = R_ws^T m_world, m_world = (0, 22, -42) uT (north, downwards inclination)
  plus a per-window local disturbance.
- Then per-subject/site bias, per-window linear drift and white noise.

Behaviours (label names, in this order): rest, walk, trot, turn, jump, shake. The second site ("leg")
follows the first ("back") with a subject-specific time lag and amplitude gain, plus its own swing.
Classes overlap on purpose: a fast walk and a slow trot share frequency and amplitude, a turn can be a
gentle curve while walking, rest windows can hold a small shake, a small jump looks like a stride, and
some windows are transitions where the labelled behaviour fills only part of the window.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .windowset import DataError, WindowSet

LABEL_NAMES = ["rest", "walk", "trot", "turn", "jump", "shake"]
SITE_NAMES = ["back", "leg"]
CHANNEL_NAMES = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z", "mag_x", "mag_y", "mag_z"]
MAG_WORLD_UT = np.array([0.0, 22.0, -42.0])
G = 9.81  # m/s^2 per g
TRANSITION_FRACTION = 0.2  # share of walk/trot/turn/rest windows that are transitions
_DEG = np.pi / 180.0
_SUBJECT_KEYS = ("walk_hz", "trot_hz", "shake_hz", "gait_amp", "leg_gain", "leg_lag_s", "leg_swing_deg", "noise_scale")


# ---------------------------------------------------------------------------------------------
# rotations
def euler_to_matrix(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll) for arrays of angles (radians); shape (..., 3, 3)."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    r = np.empty(np.shape(yaw) + (3, 3))
    r[..., 0, 0] = cy * cp
    r[..., 0, 1] = cy * sp * sr - sy * cr
    r[..., 0, 2] = cy * sp * cr + sy * sr
    r[..., 1, 0] = sy * cp
    r[..., 1, 1] = sy * sp * sr + cy * cr
    r[..., 1, 2] = sy * sp * cr - cy * sr
    r[..., 2, 0] = -sp
    r[..., 2, 1] = cp * sr
    r[..., 2, 2] = cp * cr
    return r


def _bump(tau: np.ndarray, centre: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Gaussian pulse exp(-((tau - c) / w)^2 / 2); centre/width per window (n,) against tau (1, T)."""
    return np.exp(-0.5 * ((tau - centre[:, None]) / width[:, None]) ** 2)


def _box(tau: np.ndarray, start: np.ndarray, stop: np.ndarray, edge: float = 0.02) -> np.ndarray:
    """Smooth 0-1 box between start and stop (seconds), logistic edges of `edge` seconds."""
    up = 1.0 / (1.0 + np.exp(-(tau - start[:, None]) / edge))
    down = 1.0 / (1.0 + np.exp((tau - stop[:, None]) / edge))
    return up * down


# ---------------------------------------------------------------------------------------------
# subjects
def subject_profiles(n_subjects: int, seed: int = 0) -> list[dict[str, Any]]:
    """Per-subject gait frequency, amplitude, site relation and sensor mounting (deterministic).

    `walk_hz` is the gait frequency of walking: the dominant frequency of the back site's vertical
    motion. Mounting offsets are Euler angles in degrees per site (applied as Rz Ry Rx on top of the
    site's nominal mounting).
    """
    rng = np.random.default_rng([int(seed), 101])
    out = []
    for i in range(n_subjects):
        walk = rng.uniform(1.5, 2.2)
        out.append(
            dict(
                subject=i,
                walk_hz=float(walk),
                trot_hz=float(max(walk + 0.2, rng.uniform(2.0, 3.0))),
                shake_hz=float(rng.uniform(4.0, 6.5)),
                gait_amp=float(rng.uniform(0.75, 1.3)),
                leg_gain=float(rng.uniform(1.3, 1.9)),
                leg_lag_s=float(rng.uniform(0.04, 0.14)),
                leg_swing_deg=float(rng.uniform(12.0, 28.0)),
                noise_scale=float(rng.uniform(0.7, 1.5)),
                mount_deg=[[float(v) for v in rng.normal(0.0, 12.0, 3)] for _ in SITE_NAMES],
                acc_bias_g=[[float(v) for v in rng.normal(0.0, 0.02, 3)] for _ in SITE_NAMES],
                gyro_bias_rads=[[float(v) for v in rng.normal(0.0, 0.02, 3)] for _ in SITE_NAMES],
                mag_bias_ut=[[float(v) for v in rng.normal(0.0, 4.0, 3)] for _ in SITE_NAMES],
            )
        )
    return out


# nominal mounting of each site (Euler yaw, pitch, roll in degrees): the leg sensor sits on the
# outside of the upper leg, turned on its side.
_SITE_NOMINAL_DEG = [(0.0, 0.0, 0.0), (90.0, 0.0, 90.0)]


def _mount_matrices(profiles: list[dict[str, Any]], site: int) -> np.ndarray:
    nom = euler_to_matrix(*(np.array(v) * _DEG for v in _SITE_NOMINAL_DEG[site]))
    mats = []
    for p in profiles:
        yaw, pitch, roll = (np.array(v) * _DEG for v in p["mount_deg"][site])
        mats.append(nom @ euler_to_matrix(yaw, pitch, roll))
    return np.stack(mats)


# ---------------------------------------------------------------------------------------------
# behaviours: each returns yaw, pitch, roll (n, T') and heading-frame linear acceleration (n, 3, T')
def _col(v: np.ndarray) -> np.ndarray:
    return np.asarray(v)[:, None]


def _gait(t, tau, f, amp, p, site, *, h2, pitch_deg, roll_deg, speed, fwd):
    """Shared walk/trot/turn motion: vertical bounce at f, second harmonic, fore-aft surge, lateral sway."""
    lag = _col(p["leg_lag_s"]) if site == 1 else 0.0
    gain = _col(p["leg_gain"]) if site == 1 else 1.0
    ph = 2 * np.pi * _col(f) * (t - lag) + _col(p["phase"])
    a = _col(amp) * gain
    az = a * (np.sin(ph) + _col(h2) * np.sin(2 * ph + _col(p["phase2"])))
    ax = fwd * a * np.cos(ph)
    ay = 0.3 * a * np.sin(0.5 * ph)
    pitch = _col(p["pitch0"]) + _col(pitch_deg) * _DEG * np.sin(ph + 0.6)
    roll = _col(p["roll0"]) + _col(roll_deg) * _DEG * np.sin(0.5 * ph)
    if site == 1:  # the leg swings fore-aft once per gait cycle
        pitch = pitch + _col(p["leg_swing_deg"]) * _DEG * _col(speed / 1.5).clip(0.5, 1.5) * np.sin(ph - 1.2)
    return pitch, roll, np.stack([ax, ay, az], axis=1)


def _rest(t, tau, p, site):
    n = t.shape[0]
    pitch = _col(p["pitch0"]) + 1.5 * _DEG * np.sin(2 * np.pi * _col(p["breath_hz"]) * t)
    roll = _col(p["roll0"]) + 0.0 * t
    acc = np.zeros((n, 3, t.shape[1]))
    acc[:, 2] = 0.01 * np.sin(2 * np.pi * _col(p["breath_hz"]) * t + 1.0)
    # occasional fidget: a small, short shake while resting
    env = _bump(tau, p["event_t"], p["event_w"]) * _col(p["twitch"])
    roll = roll + _col(p["twitch_deg"]) * _DEG * env * np.sin(2 * np.pi * _col(p["shake_hz"]) * t)
    acc[:, 1] += 0.03 * _col(p["twitch_deg"]) * env * np.sin(2 * np.pi * _col(p["shake_hz"]) * t + 1.6)
    if site == 1:
        pitch = pitch + _col(p["leg_pitch0"])
    yaw = _col(p["yaw0"]) + 0.0 * t
    return yaw, pitch, roll, acc


def _walk(t, tau, p, site):
    f = p["walk_hz"] * p["jitter"]
    amp = p["gait_amp"] * p["amp_u"]
    pitch, roll, acc = _gait(
        t, tau, f, amp, p, site, h2=p["h2"], pitch_deg=p["pitch_osc"], roll_deg=p["roll_osc"], speed=p["speed"], fwd=0.5
    )
    rate = _col(p["yaw_rate"])
    yaw = _col(p["yaw0"]) + rate * tau + 0.08 * np.sin(2 * np.pi * 0.25 * t)
    acc[:, 1] += _col(p["speed"]) * rate / G  # centripetal acceleration of a gentle curve
    return yaw, pitch, roll, acc


def _trot(t, tau, p, site):
    f = p["trot_hz"] * p["jitter"]
    amp = p["gait_amp"] * p["amp_u"]
    pitch, roll, acc = _gait(
        t, tau, f, amp, p, site, h2=p["h2"], pitch_deg=p["pitch_osc"], roll_deg=p["roll_osc"], speed=p["speed"], fwd=0.7
    )
    rate = _col(p["yaw_rate"])
    yaw = _col(p["yaw0"]) + rate * tau
    acc[:, 1] += _col(p["speed"]) * rate / G
    return yaw, pitch, roll, acc


def _turn(t, tau, p, site):
    moving = _col(p["moving"])  # 1: turning while walking, 0: spinning on the spot
    f = p["walk_hz"] * p["jitter"]
    amp = p["gait_amp"] * p["amp_u"]
    pitch, roll, acc = _gait(
        t, tau, f, amp, p, site, h2=p["h2"], pitch_deg=p["pitch_osc"], roll_deg=p["roll_osc"], speed=p["speed"], fwd=0.5
    )
    acc = acc * moving[:, :, None]
    pitch = _col(p["pitch0"]) + (pitch - _col(p["pitch0"])) * moving
    # yaw rate: peak rate with a smooth swell inside the window
    peak = _col(p["yaw_rate"])
    prof = 0.55 + 0.45 * np.sin(np.pi * np.clip(tau / _col(p["dur"]), 0.0, 1.0))
    rate = peak * prof
    dt = np.diff(tau, axis=1, prepend=tau[:, :1] - (tau[0, 1] - tau[0, 0]))
    yaw = _col(p["yaw0"]) + np.cumsum(rate * dt, axis=1)
    roll = roll - 6.0 * _DEG * rate  # lean into the turn
    acc[:, 1] += _col(p["speed"]) * moving * rate / G
    return yaw, pitch, roll, acc


def _jump(t, tau, p, site):
    n = t.shape[0]
    c = p["event_t"]
    h = _col(p["jump_amp"]) * (_col(p["leg_gain"]) if site == 1 else 1.0)
    crouch = _bump(tau, c - 0.3, np.full(n, 0.08))
    push = _bump(tau, c - 0.12, np.full(n, 0.05))
    flight = _box(tau, c, c + p["flight_s"])
    land = _bump(tau, c + p["flight_s"] + 0.04, np.full(n, 0.035))
    settle = _bump(tau, c + p["flight_s"] + 0.18, np.full(n, 0.06))
    acc = np.zeros((n, 3, t.shape[1]))
    # in flight the specific force is zero: linear acceleration -1 g cancels gravity (scaled for
    # small hops that only partly leave the ground)
    acc[:, 2] = -0.35 * h * crouch + 1.4 * h * push - np.clip(h, 0, 1) * flight + 2.2 * h * land - 0.4 * h * settle
    acc[:, 0] = 0.5 * h * push - 0.8 * h * land
    pitch = _col(p["pitch0"]) + 22 * _DEG * np.clip(h, 0, 1.5) * (push + 0.6 * flight - 0.9 * land)
    if site == 1:
        pitch = pitch + _col(p["leg_swing_deg"]) * _DEG * (flight - crouch)
    roll = _col(p["roll0"]) + 3 * _DEG * np.sin(2 * np.pi * 1.3 * t) * flight
    yaw = _col(p["yaw0"]) + 0.3 * flight * _col(p["yaw_sign"])
    # some jumps come out of walking: the gait continues around the take-off and landing
    f = p["walk_hz"] * p["jitter"]
    amp = p["gait_amp"] * p["amp_u"] * p["moving"]
    g_pitch, _g_roll, g_acc = _gait(
        t,
        tau,
        f,
        amp,
        p,
        site,
        h2=p["h2"],
        pitch_deg=3.0 * p["moving"],
        roll_deg=np.zeros(n),
        speed=np.ones(n),
        fwd=0.5,
    )
    calm = (1.0 - np.clip(flight + land + push, 0.0, 1.0))[:, None, :]
    acc = acc + g_acc * calm
    pitch = pitch + (g_pitch - _col(p["pitch0"])) * calm[:, 0]
    return yaw, pitch, roll, acc


def _shake(t, tau, p, site):
    n = t.shape[0]
    c, d = p["event_t"], p["shake_dur"]
    x = np.clip((tau - (c - d / 2)[:, None]) / d[:, None], 0.0, 1.0)
    env = np.sin(np.pi * x) ** 2
    f = _col(p["shake_hz"] * p["jitter"])
    gain = 0.4 if site == 1 else 1.0
    ang = gain * _col(p["shake_deg"]) * _DEG * env
    roll = _col(p["roll0"]) + ang * np.sin(2 * np.pi * f * t)
    yaw = _col(p["yaw0"]) + 0.3 * ang * np.sin(2 * np.pi * f * t + 0.8)
    pitch = _col(p["pitch0"]) + 0.2 * ang * np.sin(4 * np.pi * f * t)
    acc = np.zeros((n, 3, t.shape[1]))
    radius = 0.03  # metres from the rotation axis: tangential acceleration r * theta''
    acc[:, 1] = radius * ang * (2 * np.pi * f) ** 2 / G * np.sin(2 * np.pi * f * t + np.pi)
    acc[:, 2] = 0.15 * ang * np.sin(4 * np.pi * f * t)
    if site == 1:
        pitch = pitch + _col(p["leg_pitch0"])
    return yaw, pitch, roll, acc


_BEHAVIOURS = [_rest, _walk, _trot, _turn, _jump, _shake]
# which behaviour a transition window borrows its other part from
_NEIGHBOUR = {0: 1, 1: 2, 2: 1, 3: 1}


def _window_params(cls: int, subj: np.ndarray, profiles, dur: float, rng: np.random.Generator) -> dict:
    """Per-window random draws for one behaviour; `subj` (n,) subject index of each window."""
    n = len(subj)
    prof = {k: np.array([profiles[s][k] for s in subj]) for k in _SUBJECT_KEYS}
    lying = rng.random(n) < 0.3
    p = dict(prof)
    p.update(
        yaw0=rng.uniform(0, 2 * np.pi, n),
        t0=rng.uniform(0, 100.0, n),
        phase=rng.uniform(0, 2 * np.pi, n),
        phase2=rng.uniform(0, 2 * np.pi, n),
        jitter=rng.normal(1.0, 0.06, n),
        pitch0=rng.normal(0.0, 6.0, n) * _DEG,
        roll0=rng.normal(0.0, 4.0, n) * _DEG,
        leg_pitch0=rng.uniform(-25, 25, n) * _DEG,
        breath_hz=rng.uniform(0.2, 0.5, n),
        event_t=rng.uniform(0.3, 0.7, n) * dur,
        event_w=rng.uniform(0.1, 0.25, n),
        h2=rng.uniform(0.1, 0.35, n),
        yaw_sign=rng.choice([-1.0, 1.0], n),
        dur=np.full(n, dur),
    )
    if cls == 0:  # rest: sitting, standing or lying on the side; some fidget with a small shake
        p["pitch0"] = np.where(lying, rng.normal(0, 10, n) * _DEG, rng.uniform(-30, 15, n) * _DEG)
        p["roll0"] = np.where(lying, rng.choice([-1, 1], n) * rng.uniform(50, 90, n) * _DEG, p["roll0"])
        p["twitch"] = (rng.random(n) < 0.25).astype(float)
        p["twitch_deg"] = rng.uniform(4.0, 16.0, n)
        p["event_w"] = rng.uniform(0.08, 0.3, n)
    elif cls == 1:  # walk
        p["amp_u"] = rng.uniform(0.14, 0.38, n)
        p["pitch_osc"] = rng.uniform(2.0, 5.0, n)
        p["roll_osc"] = rng.uniform(2.0, 5.0, n)
        p["speed"] = rng.uniform(0.8, 1.6, n)
        p["yaw_rate"] = rng.normal(0.0, 0.3, n)
    elif cls == 2:  # trot / run
        p["amp_u"] = rng.uniform(0.22, 0.6, n)
        p["pitch_osc"] = rng.uniform(3.0, 8.0, n)
        p["roll_osc"] = rng.uniform(1.0, 3.0, n)
        p["speed"] = rng.uniform(1.8, 3.5, n)
        p["yaw_rate"] = rng.normal(0.0, 0.2, n)
        p["h2"] = rng.uniform(0.25, 0.55, n)
    elif cls == 3:  # turn: mostly while walking, sometimes on the spot
        p["moving"] = (rng.random(n) < 0.75).astype(float)
        p["amp_u"] = rng.uniform(0.1, 0.28, n)
        p["pitch_osc"] = rng.uniform(2.0, 5.0, n)
        p["roll_osc"] = rng.uniform(2.0, 5.0, n)
        p["speed"] = rng.uniform(0.5, 1.3, n)
        p["yaw_rate"] = p["yaw_sign"] * rng.uniform(0.3, 2.2, n)
    elif cls == 4:  # jump: most clear, some small hops
        small = rng.random(n) < 0.4
        p["jump_amp"] = np.where(small, rng.uniform(0.15, 0.45, n), rng.uniform(0.7, 1.4, n))
        p["flight_s"] = np.where(small, rng.uniform(0.05, 0.14, n), rng.uniform(0.2, 0.42, n))
        p["event_t"] = rng.uniform(0.15, 0.85, n) * dur  # near an edge: partly seen
        p["moving"] = (rng.random(n) < 0.35).astype(float)
        p["amp_u"] = rng.uniform(0.14, 0.3, n)
    elif cls == 5:  # shake: usually vigorous, sometimes weak and short
        weak = rng.random(n) < 0.3
        p["shake_deg"] = np.where(weak, rng.uniform(6.0, 16.0, n), rng.uniform(16.0, 50.0, n))
        p["shake_dur"] = np.minimum(np.where(weak, rng.uniform(0.25, 0.6, n), rng.uniform(0.6, 1.6, n)), 0.9 * dur)
        p["event_t"] = rng.uniform(0.35, 0.65, n) * dur
    return p


def _blend(a, b, s):
    """Crossfade (yaw, pitch, roll, acc) tuples: s=0 -> a, s=1 -> b; yaw through the short way."""
    ya, pa, ra, aa = a
    yb, pb, rb, ab = b
    dyaw = np.angle(np.exp(1j * (yb - ya)))
    return (ya + s * dyaw, pa + s * (pb - pa), ra + s * (rb - ra), aa + s[:, None, :] * (ab - aa))


def _sensors(yaw, pitch, roll, acc_h, mount, fs, channels):
    """Sensor readings (n, channels, T) from orientation and heading-frame acceleration on T+2 samples."""
    r_wb = euler_to_matrix(yaw, pitch, roll)  # (n, T+2, 3, 3)
    r_ws = r_wb @ mount[:, None]
    cy, sy = np.cos(yaw), np.sin(yaw)  # heading frame -> world: Rz(yaw)
    a_world = np.stack(
        [cy * acc_h[:, 0] - sy * acc_h[:, 1], sy * acc_h[:, 0] + cy * acc_h[:, 1], acc_h[:, 2] + 1.0], axis=-1
    )  # specific force: + gravity (up)
    core = slice(1, -1)
    r_sw = np.swapaxes(r_ws[:, core], -1, -2)  # world -> sensor
    out = [np.swapaxes((r_sw @ a_world[:, core, :, None])[..., 0], 1, 2)]
    if channels >= 6:
        d = (r_ws[:, 2:] - r_ws[:, :-2]) * (fs / 2.0)
        w = r_sw @ d
        omega = (
            np.stack([w[..., 2, 1] - w[..., 1, 2], w[..., 0, 2] - w[..., 2, 0], w[..., 1, 0] - w[..., 0, 1]], axis=1)
            / 2.0
        )
        out.append(omega)
    if channels == 9:
        out.append(np.swapaxes(r_sw @ MAG_WORLD_UT, 1, 2))
    return np.concatenate(out, axis=1)


SYNTHETIC_RATE_HZ = 50.0  # used when the parameters leave sample_rate_hz unset


def make_synthetic(
    n_subjects: int = 24,
    windows_per_class: int = 24,
    channels: int = 9,
    sites: int = 2,
    window: int = 100,
    sample_rate_hz: float = SYNTHETIC_RATE_HZ,
    seed: int = 0,
) -> WindowSet:
    """Labelled synthetic IMU windows, X (N, channels, sites, window) with N = subjects x 6 x windows.

    channels: 3 (acc), 6 (acc + gyro) or 9 (acc + gyro + mag); sites: 1 (back) or 2 (back, leg).
    Same arguments -> identical arrays.
    """
    if channels not in (3, 6, 9):
        raise DataError(f"synthetic_channels must be 3 (acc), 6 (acc+gyro) or 9 (acc+gyro+mag); got {channels}")
    if sites not in (1, 2):
        raise DataError(f"synthetic_sites must be 1 (back) or 2 (back, leg); got {sites}")
    if n_subjects < 1 or windows_per_class < 1:
        raise DataError(
            f"need at least one subject and one window per class; got n_subjects={n_subjects}, "
            f"windows_per_class={windows_per_class}"
        )
    if window < 4:
        raise DataError(f"window must be at least 4 samples; got {window}")
    if not sample_rate_hz > 0:
        raise DataError(f"sample_rate_hz must be positive; got {sample_rate_hz}")
    fs = float(sample_rate_hz)
    dur = window / fs
    profiles = subject_profiles(n_subjects, seed)
    rng = np.random.default_rng([int(seed), 202])
    k = len(LABEL_NAMES)
    subj = np.repeat(np.arange(n_subjects), windows_per_class)  # per class, subject-major
    tau = ((np.arange(window + 2) - 1) / fs)[None, :]  # one extra sample each side

    params = [_window_params(c, subj, profiles, dur, rng) for c in range(k)]
    # transitions: the labelled behaviour fills only 55-85% of the window, the rest is a neighbour
    trans = [rng.random(len(subj)) < TRANSITION_FRACTION for _ in range(k)]
    cut = [rng.uniform(0.55, 0.85, len(subj)) * dur for _ in range(k)]
    lead = [rng.random(len(subj)) < 0.5 for _ in range(k)]  # neighbour before or after

    X = np.empty((k, len(subj), channels, sites, window), dtype=np.float32)
    for site in range(sites):
        mount_all = _mount_matrices(profiles, site)
        motions = []
        for c in range(k):
            p = params[c]
            t = p["t0"][:, None] + tau
            motions.append(_BEHAVIOURS[c](t, tau, p, site))
        for c in range(k):
            y, pi, ro, ac = motions[c]
            if c in _NEIGHBOUR:
                s = 1.0 / (1.0 + np.exp(-(tau - cut[c][:, None]) / 0.08))  # 0 before the cut, 1 after
                s = np.where(lead[c][:, None], 1.0 - s, s)  # neighbour first or last
                s = s * trans[c][:, None]
                y, pi, ro, ac = _blend(motions[c], motions[_NEIGHBOUR[c]], s)
            sig = _sensors(y, pi, ro, ac, mount_all[subj], fs, channels)
            X[c, :, :, site, :] = _impair(sig, subj, profiles, site, channels, dur, rng)

    X = X.reshape(k * len(subj), channels, sites, window)
    y = np.repeat(np.arange(k), len(subj))
    subject = np.tile(subj, k)
    order = np.lexsort((y, subject))  # subject, then behaviour
    provenance = {
        "kind": "synthetic",
        "generator": "workbench.data.synthetic",
        "seed": int(seed),
        "n_subjects": int(n_subjects),
        "windows_per_class": int(windows_per_class),
        "channels": int(channels),
        "sites": int(sites),
        "window": int(window),
        "sample_rate_hz": fs,
        "transition_fraction": TRANSITION_FRACTION,
        "note": "labelled synthetic data from a physical IMU model; not a real recording",
        "subjects": [
            {key: pr[key] for key in ("subject", "walk_hz", "trot_hz", "shake_hz", "gait_amp")} for pr in profiles
        ],
    }
    return WindowSet(
        X=X[order],
        y=y[order],
        subject=subject[order],
        label_names=list(LABEL_NAMES),
        channel_names=CHANNEL_NAMES[:channels],
        site_names=SITE_NAMES[:sites],
        sample_rate_hz=fs,
        source="synthetic",
        provenance=provenance,
    )


def _impair(
    sig: np.ndarray, subj: np.ndarray, profiles, site: int, channels: int, dur: float, rng: np.random.Generator
) -> np.ndarray:
    """Bias (per subject and site), linear drift and white noise (per window)."""
    n, _c, t = sig.shape
    ramp = np.linspace(-0.5, 0.5, t)[None, :] * dur
    scale = np.array([profiles[s]["noise_scale"] for s in subj])[:, None]
    groups = [("acc_bias_g", 0.012, 0.004)]
    if channels >= 6:
        groups.append(("gyro_bias_rads", 0.012, 0.01))
    if channels == 9:
        groups.append(("mag_bias_ut", 0.6, 0.3))
    out = sig.copy()
    for g, (key, noise, drift) in enumerate(groups):
        bias = np.array([profiles[s][key][site] for s in subj])  # (n, 3)
        sl = slice(3 * g, 3 * g + 3)
        out[:, sl] += bias[:, :, None]
        out[:, sl] += rng.normal(0, drift, (n, 3, 1)) * ramp[:, None, :]
        out[:, sl] += rng.normal(0, noise, (n, 3, t)) * scale[:, :, None]
        if key == "mag_bias_ut":  # local field disturbance
            out[:, sl] += rng.normal(0, 2.0, (n, 3, 1))
    return out
