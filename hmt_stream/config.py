"""One settings table: every setting declared once (name, default, help), read from TOML, env and flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


def setting(default: Any, help: str, *, choices: tuple[str, ...] = (), minimum: float | None = None,
            validate: Callable[[Any], object] | None = None) -> Any:
    """Declare one setting: its default, the help text config.toml and the README show, and its limits."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum,
                                            "validate": validate})


def _secret(value: str) -> None:
    if value and len(value.encode()) < 32:
        raise ValueError("must be at least 32 bytes long (RFC 7518 §3.2), or empty for a random one")


def _rate(value: str) -> None:
    from limits import parse_many

    parse_many(value)


def _storage(value: str) -> None:
    from limits.storage import SCHEMES  # type: ignore[attr-defined]  # there since limits 3, not re-exported

    scheme, separator, _ = value.partition("://")
    if not separator or scheme not in SCHEMES or scheme.startswith("async+"):
        raise ValueError(f"not a storage URI of the limits library: {value!r} (memory://, redis://host:6379, ...)")


def _api_keys(value: tuple[str, ...]) -> None:
    if any(len(key) < 16 for key in value):
        raise ValueError("every API key must be at least 16 characters long (a short key can be guessed)")


def _networks(value: tuple[str, ...]) -> None:
    import ipaddress

    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)") from None


@dataclass(frozen=True)
class ModelSettings:
    name: str = setting("tencent/Hunyuan-MT-7B",
                        "Hub id or local directory of the model; 'demo' builds and serves the tiny demo model.")
    revision: str = setting("", "Hub revision (branch, tag or commit) to load; empty for the default.")
    dtype: str = setting("auto", "Weights dtype: auto (bf16 on CUDA, fp16 where bf16 is unsupported, fp32 on CPU).",
                         choices=("auto", "bfloat16", "float16", "float32"))
    device: str = setting("auto", "Device: auto (CUDA when available), cpu, cuda or cuda:N.")
    load_in_8bit: bool = setting(False, "Load the weights in 8-bit through bitsandbytes (about half the memory).")
    local_files_only: bool = setting(False, "Never contact the hub; load only files already on disk.")
    demo_dir: str = setting("~/.cache/hmt-stream/demo-model", "Where the demo model is built (once) and kept.")
    warmup: bool = setting(True, "Run one short generation at start-up so the first user does not pay for it.")
    batching: bool = setting(True, "One decode loop serves every running translation: they share each forward "
                             "pass (the batch holds up to scheduler.max_concurrent). false: a thread per "
                             "translation, each generating alone.")
    prompts: str = setting("auto", "Prompt templates: hunyuan-mt (Hunyuan-MT-7B's model card), hy-mt1.5 (HY-MT1.5's "
                           "README: terminology, context and formatted templates too), or auto (from model.name).",
                           choices=("auto", "hunyuan-mt", "hy-mt1.5"))


def _urls(value: tuple[str, ...]) -> None:
    for url in value:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http:// or https:// URL (e.g. http://gpu-1:8000/v1)")


@dataclass(frozen=True)
class RemoteSettings:
    endpoints: tuple[str, ...] = setting((), "OpenAI-compatible inference servers (vLLM, SGLang, llama.cpp, another "
                                         "hmt-stream) to generate on instead of loading the model here, e.g. "
                                         "['http://gpu-1:8000/v1'] (env: comma-separated). The tokenizer is still "
                                         "loaded from model.name, to count prompt tokens.", validate=_urls)
    api_key: str = setting("", "Bearer key sent to the inference servers; empty for none.")
    model: str = setting("", "The model's name on the inference servers (vLLM's --served-model-name); empty: "
                         "model.name.")
    max_concurrent: int = setting(8, "Requests in flight per inference server. With endpoints set, the gateway "
                                  "generates up to endpoints × this at once (in place of scheduler.max_concurrent).",
                                  minimum=1)
    timeout_s: float = setting(30.0, "Seconds an inference server may take to connect, to send its first token and "
                               "between tokens before it counts as failed (the request goes on on another).",
                               minimum=0.1)
    health_interval_s: float = setting(5.0, "Seconds between health checks of each inference server (GET /health, "
                                       "else GET /v1/models).", minimum=0.1)


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = setting(512, "Most tokens generated for one translation.", minimum=1)
    max_input_tokens: int = setting(2048, "Longest prompt in tokens; longer input is refused with too_long.",
                                    minimum=16)
    max_chars: int = setting(100000, "Longest input text (a whole document) in characters; longer input is refused "
                             "with too_long.", minimum=1)
    segment_tokens: int = setting(256, "Documents are cut into segments of at most this many tokens (whole "
                                  "sentences where they fit), each translated on its own.", minimum=8)
    top_k: int = setting(20, "Sampling: top-k (Hunyuan-MT's recommended 20).", minimum=0)
    top_p: float = setting(0.6, "Sampling: nucleus top-p (recommended 0.6).", minimum=0.0)
    temperature: float = setting(0.7, "Sampling temperature (recommended 0.7); 0 means greedy.", minimum=0.0)
    repetition_penalty: float = setting(1.05, "Repetition penalty (recommended 1.05).", minimum=0.0)
    workers: int = setting(1, "With model.batching = false: threads that run generation off the event loop (at "
                           "least scheduler.max_concurrent).", minimum=1)


@dataclass(frozen=True)
class SchedulerSettings:
    max_concurrent: int = setting(0, "Translations generated at the same time (with model.batching: the batch "
                                  "size). 0 = auto: with model.batching 8 on CPU, 64 on CUDA (fewer if the cache "
                                  "of that many longest translations would not fit in memory); 1 without.",
                                  minimum=0)
    max_queue: int = setting(16, "Translations that may wait for a free slot; one more is refused as overloaded.",
                             minimum=0)
    max_per_client: int = setting(8, "Most translations one client (API key, token subject, or IP when auth is off) "
                                  "may have running or waiting at once (a document counts once, however many "
                                  "segments it has), its fair share of the queue; one more is refused as "
                                  "overloaded. 0: no cap.", minimum=0)


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = setting(True, "Answer repeated requests from the phrase cache.")
    max_entries: int = setting(10000, "Most translations kept in the phrase cache (least recently used go first).",
                               minimum=1)
    ttl_s: float = setting(86400.0, "Seconds a cached translation is kept.", minimum=0.0)
    shared: bool = setting(False, "With auth on, let every API key hit every other key's cached translations. Off: "
                           "each key has its own entries (privacy: a hit tells a key what another has translated, "
                           "and shows it).")


@dataclass(frozen=True)
class SessionSettings:
    retention_s: float = setting(300.0, "Seconds a finished session stays readable (late readers, resume).",
                                 minimum=0.0)
    disconnect_grace_s: float = setting(20.0, "Seconds a running session waits for a reader to come back "
                                        "after the last one left, before it is cancelled.", minimum=0.0)


def _store_url(value: str) -> None:
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"not a Redis URL: {value!r} (redis://host:6379/0, or empty for this process's memory)")


@dataclass(frozen=True)
class StoreSettings:
    url: str = setting("", "Where sessions live: empty for this process's memory, or a Redis URL "
                       "(redis://host:6379/0) that replicas share: their sessions, phrase cache and rate limits, "
                       "and a dead replica's translations are finished by another.", validate=_store_url)
    lease_s: float = setting(5.0, "With a Redis store: seconds after a replica's last renewal (every second) that "
                             "another replica adopts its translations.", minimum=2.0)


@dataclass(frozen=True)
class TransportSettings:
    websocket: bool = setting(True, "Offer the WebSocket transport (/ws).")
    sse: bool = setting(True, "Offer the Server-Sent Events transport.")
    poll: bool = setting(True, "Offer the long-poll transport.")
    libretranslate: bool = setting(True, "Offer the LibreTranslate-compatible API at the server's root (/translate, "
                                   "/detect, /languages, /translate_file, /frontend/settings).")
    openai: bool = setting(True, "Serve the OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions.")
    heartbeat_s: float = setting(15.0, "Seconds between heartbeats on WebSocket (app-level ping) and SSE "
                                 "(comment line).", minimum=1.0)
    poll_timeout_s: float = setting(20.0, "Seconds a long-poll waits for events when the client names none.",
                                    minimum=0.0)
    poll_timeout_max_s: float = setting(30.0, "Longest wait a long-poll client may ask for (below the 60 s "
                                        "idle timeout of common proxies).", minimum=0.0)


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("127.0.0.1", "Address to listen on; 0.0.0.0 for every interface.")
    port: int = setting(8080, "TCP port to listen on.", minimum=0)
    web_dir: str = setting("", "Folder of the web page's static files; empty for the web/ folder of this project.")
    gc_tuning: bool = setting(True, "After start-up, freeze the loaded objects out of Python's garbage collector and "
                              "collect less often (full collections otherwise stall every stream; see "
                              "docs/benchmarks.md).")
    allowed_hosts: tuple[str, ...] = setting((), "Host names a server listening on a loopback address answers to, "
                                             "besides localhost, 127.0.0.1, [::1] and server.host (against DNS "
                                             "rebinding), e.g. the public name a reverse proxy passes on; '*' for "
                                             "any.")
    trusted_proxies: tuple[str, ...] = setting((), "Reverse proxies (IP addresses or networks) whose X-Forwarded-For "
                                               "/ -Host / -Proto and Forwarded headers are believed: the client's "
                                               "address for limits, the host for the origin check, https for the "
                                               "Secure cookie.", validate=_networks)
    max_connections: int = setting(1000, "Most open connections, kept below the process's file limit. At the cap, "
                                   "idle connections are closed to make room, or a new one is refused with 503.",
                                   minimum=1)


@dataclass(frozen=True)
class AuthSettings:
    enabled: bool = setting(False, "Require an API key or token on every API call (off for a localhost setup).")
    api_keys: tuple[str, ...] = setting((), "API keys accepted as `Authorization: Bearer <key>` only, each at least "
                                        "16 characters (env: comma-separated).", validate=_api_keys)
    jwt_secret: str = setting("", "HS256 secret of JWTs from your identity provider (their subjects become "
                              "'jwt:<sub>'); empty: no JWTs are accepted.", validate=_secret)
    jwt_audience: str = setting("", "The `aud` a JWT must carry; empty: not checked.")
    jwt_issuer: str = setting("", "The `iss` a JWT must carry; empty: not checked.")
    token_ttl_s: float = setting(600.0, "Lifetime of the short-lived browser token that POST /api/token issues.",
                                 minimum=1.0)
    signin_ttl_s: float = setting(43200.0, "How long a browser stays signed in: it renews its token (POST /api/token "
                                  "with the token) until this long after it presented the key, then needs the key "
                                  "again.", minimum=1.0)
    allowed_origins: tuple[str, ...] = setting((), "Origins besides the server's own that may open WebSockets "
                                               "and send POST/DELETE (e.g. https://app.example.com); '*' for any.")
    failure_rate: str = setting("10/minute", "Failed authentications per client address (`limits` notation); "
                                "over it, that address is refused as rate_limited before its credential is "
                                "checked.", validate=_rate)


@dataclass(frozen=True)
class LimitSettings:
    rate: str = setting("10/minute", "Translations per principal (API key, token subject, or IP when auth is "
                        "off), in the `limits` library's notation, e.g. '10/minute;100/hour'.", validate=_rate)
    chars_per_minute: int = setting(200000, "Characters of text per principal and minute (documents count by "
                                    "their length, not as one translation); 0 for no limit.", minimum=0)
    storage: str = setting("memory://", "Where rate-limit counters live (a `limits` storage URI).",
                           validate=_storage)
    max_body_bytes: int = setting(1048576, "Largest HTTP request body (a 100,000-character document in UTF-8 JSON "
                                  "fits); larger ones are refused with too_large.", minimum=1024)
    max_ws_frame_bytes: int = setting(1048576, "Largest WebSocket message; a larger one closes the socket (1009).",
                                      minimum=1024)
    refusal_rate: str = setting("30/minute", "Refused translation requests (too long, bad input) per client "
                                "(`limits` notation); over it, the client is refused as rate_limited before its "
                                "text is tokenized. Refusals never count against limits.rate.", validate=_rate)
    header_timeout_s: float = setting(10.0, "Seconds a connection may take to send a whole request head, and may "
                                      "stay idle between requests.", minimum=0.1)
    body_timeout_s: float = setting(10.0, "Seconds a request body may take to arrive; a slower one is refused "
                                    "with request_timeout.", minimum=0.1)
    max_websockets_per_client: int = setting(16, "Most WebSockets one client may hold open.", minimum=1)
    max_readers_per_client: int = setting(16, "Most SSE streams and waiting long-polls one client may hold open.",
                                          minimum=1)
    max_follows_per_socket: int = setting(16, "Most sessions one WebSocket may follow at once.", minimum=1)
    ws_messages_per_s: float = setting(20.0, "Messages a WebSocket may send per second (in bursts of up to twice as "
                                       "many); a socket over it is closed (1008).", minimum=0.1)
    ws_idle_timeout_s: float = setting(300.0, "Close a WebSocket that has asked for nothing (translate, resume, "
                                       "cancel; pings do not count) and follows no running session for this long.",
                                       minimum=1.0)
    slow_reader_timeout_s: float = setting(30.0, "Drop a connection that has not accepted a write for this long "
                                           "(its session carries on, for resume).", minimum=0.1)
    shutdown_grace_s: float = setting(30.0, "On SIGTERM: how long running translations may finish before the "
                                      "rest are cancelled.", minimum=0.0)


@dataclass(frozen=True)
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    transports: TransportSettings = field(default_factory=TransportSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    server: ServerSettings = field(default_factory=ServerSettings)

    def replace(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with 'section.key' overrides, each checked like a value from config.toml."""
        return _apply(self, overrides, _from_toml)


def sections() -> dict[str, type]:
    return {f.name: typing.get_type_hints(Settings)[f.name] for f in dataclasses.fields(Settings)}


def describe() -> list[tuple[str, str, Any, str]]:
    """Every setting as (section, key, default, help), in declaration order."""
    rows = []
    for section, cls in sections().items():
        for f in dataclasses.fields(cls):
            rows.append((section, f.name, f.default, f.metadata["help"]))
    return rows


def _check(name: str, f: dataclasses.Field[Any], value: Any) -> Any:
    choices, minimum = f.metadata["choices"], f.metadata["minimum"]
    if choices and value not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}, not {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, not {value!r}")
    if f.metadata["validate"] is not None:
        try:
            f.metadata["validate"](value)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return value


def _is_list(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple


def _from_toml(name: str, kind: type, value: Any) -> Any:
    if _is_list(kind):
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{name}: expected a list of strings, got {value!r}")
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _from_env(name: str, kind: type, text: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected a boolean (true/false), got {text!r}")
    if kind is str:
        return text
    if _is_list(kind):
        return tuple(item.strip() for item in text.split(",") if item.strip())
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{name}: expected {kind.__name__}, got {text!r}") from None


def _apply(settings: Settings, values: Mapping[str, Any], convert: Any) -> Settings:
    changed: dict[str, dict[str, Any]] = {}
    known = sections()
    for dotted, raw in values.items():
        section, _, key = dotted.partition(".")
        if section not in known:
            raise ConfigError(f"{dotted}: unknown section {section!r} (known: {', '.join(known)})")
        fields = {f.name: f for f in dataclasses.fields(known[section])}
        if key not in fields:
            raise ConfigError(f"{dotted}: unknown setting {key!r} in [{section}]")
        kind = typing.get_type_hints(known[section])[key]
        changed.setdefault(section, {})[key] = _check(dotted, fields[key], convert(dotted, kind, raw))
    return dataclasses.replace(settings, **{
        section: dataclasses.replace(getattr(settings, section), **keys) for section, keys in changed.items()
    })


def _flatten_toml(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: expected a [{section}] table in {source}, got a bare value")
        for key, value in table.items():
            flat[f"{section}.{key}"] = value
    return flat


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """HMT_<SECTION>_<KEY> variables as 'section.key' overrides."""
    known = sections()
    found = {}
    for name, value in environ.items():
        if not name.startswith("HMT_"):
            continue
        rest = name[4:].lower()
        section = next((s for s in known if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(f"{name}: no such section (HMT_<SECTION>_<KEY>, sections: {', '.join(known)})")
        found[f"{section}.{rest[len(section) + 1:]}"] = value
    return found


def load(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults, then the TOML file, then HMT_* variables, then flags: each later one wins."""
    settings = Settings()
    if path is not None:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        settings = _apply(settings, _flatten_toml(data, str(file)), _from_toml)
    settings = _apply(settings, env_overrides(os.environ if environ is None else environ), _from_env)
    return _apply(settings, overrides or {}, _from_toml)

