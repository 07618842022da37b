// Plays one title of a running abrkit stack in dash.js, Shaka Player or hls.js, as a web player on another
// origin would, and keeps what happened in window.abrkit (the driver reads it once `done` is true).
//
// Query: gateway (URL), username, password, title, player ("dashjs" | "shaka" | "hlsjs": its HLS
// playlists, in lowLatencyMode), target_s (stop once
// the playhead passes it), timeout_s (give up after it), via (optional: fetch the MPD and segments
// from this origin, a shaping proxy in front of the edge, instead of the edge itself), buffer_s
// (optional, dash.js: the buffer it keeps ahead, at every quality), live_s (optional: a live channel;
// stop after this many seconds of playing instead of at target_s, sampling dash.js's or hls.js's
// live latency), max_rate (optional, hls.js: maxLiveSyncPlaybackRate).
'use strict';

const params = new URLSearchParams(location.search);
const report = {
  done: false,
  player: params.get('player'),
  version: null,
  errors: [],            // every player, media element and page error, as text
  licenseRequests: [],   // what the player says about its license exchanges
  qualities: [],         // video bitrates the player rendered, in order (bps)
  stalls: 0,
  currentTime: 0,
  ended: false,
  frames: null,          // video.getVideoPlaybackQuality()
  videoSize: null,
  picture: null,         // luma of the last frame drawn to a canvas (black for EME-decrypted video)
  manifestUrl: null,
  licenseUrl: null,
  wallSeconds: 0,
  liveLatency: [],       // live only: dash.js's getCurrentLiveLatency() or hls.js's latency every 0.5 s (s)
  targetLatency: null,   // live only, hls.js: its targetLatency (s; PART-HOLD-BACK in low-latency mode)
  playingSeconds: 0,     // live only: wall seconds since the first frame played
  // When (Date.now(), ms: the driver stamps the browser's network events with the same clock) the player
  // chose another video rendition, and which; and what it says it gave up downloading (Shaka's
  // 'downloadfailed', dash.js's FRAGMENT_LOADING_ABANDONED), for telling its own cancels from failures.
  switches: [],          // {t_ms, from_bps, to_bps, height}
  cancelled: [],         // {t_ms, url, why}
  doneAt: null,          // Date.now() when the page finished
};
window.abrkit = report;
const started = performance.now();

// The player chose the video rendition of `toBps` (from the one of `fromBps`; null for its first choice).
function switched(fromBps, toBps, height) {
  report.switches.push({ t_ms: Date.now(), from_bps: fromBps ?? null, to_bps: toBps ?? null, height: height ?? null });
}

function fail(where, error) {
  const text = error && error.message ? error.message : JSON.stringify(error);
  report.errors.push(`${where}: ${text}`);
}

window.addEventListener('error', (e) => fail('page', e.error || e.message));
window.addEventListener('unhandledrejection', (e) => fail('page (promise)', e.reason));

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const tag = document.createElement('script');
    tag.src = src;
    tag.onload = resolve;
    tag.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.appendChild(tag);
  });
}

async function call(what, url, init) {
  const response = await fetch(url, init);
  if (!response.ok) {
    throw new Error(`${what}: HTTP ${response.status} ${await response.text()}`);
  }
  return response.json();
}

async function playDashjs(video, manifestUrl, token) {
  await loadScript('/lib/dashjs/dash.all.min.js');
  report.version = dashjs.Version || (dashjs.MediaPlayer().create().getVersion());
  const player = dashjs.MediaPlayer().create();
  const events = dashjs.MediaPlayer.events;
  const settings = { debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } };
  if (params.get('buffer_s')) {
    // A short buffer target, so that a change of the link shows in the rendered quality soon.
    const seconds = Number(params.get('buffer_s'));
    settings.streaming = { buffer: { bufferTimeDefault: seconds, bufferTimeAtTopQuality: seconds,
      bufferTimeAtTopQualityLongForm: seconds } };
  }
  player.updateSettings(settings);
  player.on(events.ERROR, (e) => fail('dash.js error', e.error || e));
  player.on(events.PLAYBACK_ERROR, (e) => fail('dash.js playback error', e.error || e));
  // Protection events live on dashjs.Protection (MediaPlayer.events gets them only once DRM starts).
  player.on(dashjs.Protection.events.LICENSE_REQUEST_COMPLETE, (e) => {
    report.licenseRequests.push({ ok: !e.error, error: e.error ? `${e.error.code} ${e.error.message}` : null });
  });
  player.on(events.QUALITY_CHANGE_RENDERED, (e) => {
    if (e.mediaType === 'video' && e.newRepresentation) {
      report.qualities.push(e.newRepresentation.bandwidth);
    }
  });
  player.on(events.QUALITY_CHANGE_REQUESTED, (e) => {
    const to = e.newRepresentation;
    if (e.mediaType === 'video' && to) switched(e.oldRepresentation && e.oldRepresentation.bandwidth, to.bandwidth, to.height);
  });
  player.on(events.FRAGMENT_LOADING_ABANDONED, (e) => {
    report.cancelled.push({ t_ms: Date.now(), url: e.request && e.request.url, why: 'abandoned' });
  });
  player.on(events.BUFFER_EMPTY, (e) => { if (e.mediaType === 'video') report.stalls += 1; });
  // The license server URL comes from the MPD (ClearKey ContentProtection, dashif:Laurl): what is
  // under test is that dash.js finds it there. The page adds only the bearer token.
  player.setProtectionData({
    'org.w3.clearkey': { httpRequestHeaders: { Authorization: `Bearer ${token}` } },
  });
  player.initialize(video, manifestUrl, true);
  window.abrkitDash = player;
  return player;
}

async function playHlsjs(video, playlistUrl) {
  await loadScript('/lib/hlsjs/hls.min.js');
  report.version = Hls.version;
  if (!Hls.isSupported()) {
    throw new Error('hls.js: MediaSource is not supported');
  }
  // lowLatencyMode (hls.js's default, said here): parts, preload hints and blocking playlist reloads
  // where the playlist offers them (EXT-X-PART-INF, EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES).
  const config = { lowLatencyMode: true, debug: false };
  if (params.get('max_rate')) {
    // hls.js's catch-up (off by default: 1): speed up to this rate while behind its target latency.
    config.maxLiveSyncPlaybackRate = Number(params.get('max_rate'));
  }
  const hls = new Hls(config);
  hls.on(Hls.Events.ERROR, (event, data) => {
    if (data.fatal) fail('hls.js fatal error', { type: data.type, details: data.details, url: data.url });
    else report.nonFatal = (report.nonFatal || []).concat([data.details]).slice(-20);
  });
  let levelBps = null;
  hls.on(Hls.Events.LEVEL_SWITCHING, (event, data) => {
    const level = hls.levels[data.level];
    if (!level) return;
    switched(levelBps, level.bitrate, level.height);
    levelBps = level.bitrate;
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (event, data) => {
    const level = hls.levels[data.level];
    if (level) report.qualities.push(level.bitrate);
  });
  video.addEventListener('waiting', () => { if (video.currentTime > 0) report.stalls += 1; });
  hls.loadSource(playlistUrl);
  hls.attachMedia(video);
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => fail('play()', e)));
  window.abrkitHls = hls;
  return hls;
}

async function playShaka(video, manifestUrl, token) {
  await loadScript('/lib/shaka/shaka-player.compiled.js');
  shaka.polyfill.installAll();
  if (!shaka.Player.isBrowserSupported()) {
    throw new Error('Shaka Player: browser not supported');
  }
  report.version = shaka.Player.version;
  const player = new shaka.Player();
  await player.attach(video);
  player.addEventListener('error', (e) => fail('shaka error', e.detail));
  player.addEventListener('buffering', (e) => { if (e.buffering && video.currentTime > 0) report.stalls += 1; });
  player.addEventListener('adaptation', (e) => {
    const bps = (track) => track && (track.videoBandwidth || track.bandwidth);
    if (e.newTrack) switched(bps(e.oldTrack), bps(e.newTrack), e.newTrack.height);
    const active = player.getVariantTracks().find((t) => t.active);
    if (active) report.qualities.push(active.videoBandwidth || active.bandwidth);
  });
  player.addEventListener('downloadfailed', (e) => {
    // Shaka's own aborts (e.g. on a switch, SegmentPrefetch.switchStream) end as OPERATION_ABORTED.
    const code = e.error ? e.error.code : null;
    report.cancelled.push({ t_ms: Date.now(), url: e.request && e.request.uris[0],
      why: code === shaka.util.Error.Code.OPERATION_ABORTED ? 'aborted' : `failed (code ${code}, HTTP ${e.httpResponseCode})` });
  });
  const license = shaka.net.NetworkingEngine.RequestType.LICENSE;
  // No drm.servers: Shaka takes the ClearKey license URL from the MPD (dashif:Laurl) as well.
  player.getNetworkingEngine().registerRequestFilter((type, request) => {
    if (type === license) {
      request.headers.Authorization = `Bearer ${token}`;
      report.licenseUrl = request.uris[0];
    }
  });
  player.getNetworkingEngine().registerResponseFilter((type, response) => {
    if (type === license) report.licenseRequests.push({ ok: true, error: null });
  });
  await player.load(manifestUrl);
  const active = player.getVariantTracks().find((t) => t.active);
  if (active) report.qualities.push(active.videoBandwidth || active.bandwidth);
  video.play().catch((e) => fail('play()', e));
  return player;
}

// Mean and standard deviation of the luma of `source` (a video or an image) drawn at 64x36.
function luma(source) {
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 36;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(source, 0, 0, canvas.width, canvas.height);
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  let sum = 0;
  let sumSquares = 0;
  const count = data.length / 4;
  for (let i = 0; i < data.length; i += 4) {
    const y = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    sum += y;
    sumSquares += y * y;
  }
  const mean = sum / count;
  return { mean, std: Math.sqrt(Math.max(0, sumSquares / count - mean * mean)) };
}

window.abrkitLuma = luma;

function finish(video) {
  report.currentTime = video.currentTime;
  report.ended = video.ended;
  report.frames = video.getVideoPlaybackQuality ? (({ totalVideoFrames, droppedVideoFrames, corruptedVideoFrames }) =>
    ({ totalVideoFrames, droppedVideoFrames, corruptedVideoFrames }))(video.getVideoPlaybackQuality()) : null;
  report.videoSize = [video.videoWidth, video.videoHeight];
  try {
    report.picture = luma(video);
  } catch (e) {
    fail('canvas', e);
  }
  report.wallSeconds = (performance.now() - started) / 1000;
  report.doneAt = Date.now();
  report.done = true;
}

async function main() {
  const video = document.getElementById('video');
  video.addEventListener('error', () => fail('video element', video.error));
  const gateway = params.get('gateway');
  const title = params.get('title');
  const targetS = Number(params.get('target_s') || '5');
  const timeoutS = Number(params.get('timeout_s') || '90');
  const login = await call('login', `${gateway}/auth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: params.get('username'), password: params.get('password') }),
  });
  const token = login.access_token;
  const steering = await call('playback request', `${gateway}/playback/${encodeURIComponent(title)}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}` },
  });
  report.manifestUrl = report.player === 'hlsjs' ? steering.hls_urls[0] : steering.manifest_urls[0];
  if (params.get('via')) {
    // Through a shaping proxy in front of the edge (same path: the signature is in it).
    const url = new URL(report.manifestUrl);
    url.host = new URL(params.get('via')).host;
    report.manifestUrl = url.toString();
  }
  if (report.player === 'dashjs') {
    await playDashjs(video, report.manifestUrl, token);
  } else if (report.player === 'hlsjs') {
    await playHlsjs(video, report.manifestUrl);
  } else if (report.player === 'shaka') {
    await playShaka(video, report.manifestUrl, token);
  } else {
    throw new Error(`unknown player ${report.player}`);
  }
  const deadline = performance.now() + timeoutS * 1000;
  const liveS = params.get('live_s') ? Number(params.get('live_s')) : null;
  let playingSince = null;
  let lastSample = 0;
  const reached = () => {
    if (liveS === null) return video.currentTime >= targetS;
    if (playingSince === null && !video.paused && video.readyState >= 3) playingSince = performance.now();
    if (playingSince === null) return false;
    report.playingSeconds = (performance.now() - playingSince) / 1000;
    if ((window.abrkitDash || window.abrkitHls) && performance.now() - lastSample >= 500) {
      lastSample = performance.now();
      if (window.abrkitDash) {
        report.liveLatency.push(window.abrkitDash.getCurrentLiveLatency());
      } else {
        report.liveLatency.push(window.abrkitHls.latency);
        report.targetLatency = window.abrkitHls.targetLatency;
      }
    }
    return report.playingSeconds >= liveS;
  };
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      if (reached() || video.ended || report.errors.length > 0 || performance.now() > deadline) {
        clearInterval(timer);
        resolve();
      }
    }, 100);
  });
  if (!(reached() || video.ended) && report.errors.length === 0) {
    fail('timeout', new Error(`the playhead is at ${video.currentTime.toFixed(2)} s after ${timeoutS} s`));
  }
  video.pause();
  finish(video);
}

main().catch((e) => {
  fail('page', e);
  finish(document.getElementById('video'));
});
