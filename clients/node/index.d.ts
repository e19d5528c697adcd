// Types of the voicemesh package (hand-written beside the JavaScript; `tsc -p .` checks them in the tests).

import type { ChannelCredentials } from '@grpc/grpc-js';

/** One model with options for its backend, as LiveKit's plugins take them. */
export interface Model {
  /** "provider/model[:variant]" */
  descriptor: string;
  baseUrl?: string;
  apiKey?: string;
  timeoutS?: number;
  /** TTS speaking rate (0 = 1.0). */
  speed?: number;
  extra?: Record<string, string | number | boolean>;
}

/** A descriptor, a Model, or an ordered fallback list of them (the first that answers serves the turn). */
export type ModelChoice = string | Model | Array<string | Model>;

export interface ToolContext {
  callId: string;
  name: string;
  session: AgentSession;
}

/** A tool the agent may call; with `execute`, the session runs it and sends back its result. */
export interface ToolDefinition<Args = any> {
  description?: string;
  /** JSON schema of the arguments object. */
  parameters?: Record<string, unknown>;
  /** Its result goes back to the agent: a string as is, anything else as JSON. A throw sends { error }. */
  execute?: (args: Args, context: ToolContext) => unknown | Promise<unknown>;
}

export interface Tool<Args = any> extends ToolDefinition<Args> {
  name: string;
}

export type ToolChoice = 'auto' | 'none' | 'required' | { name: string };

export interface TlsOptions {
  /** PEM file of the CA to trust (default $VOICEMESH_TLS_CA; TLS is off without one). */
  ca?: string;
  /** PEM client certificate and key files for mutual TLS (default $VOICEMESH_TLS_CERT / _KEY). */
  cert?: string;
  key?: string;
}

export interface AgentSessionOptions {
  stt?: ModelChoice | null;
  llm?: ModelChoice | null;
  tts?: ModelChoice | null;
  /** A realtime speech-to-speech model in place of stt, llm and tts. */
  realtime?: ModelChoice;
  instructions?: string;
  tools?: Tool[] | Record<string, ToolDefinition>;
  toolChoice?: ToolChoice;
  /** Orchestrator address (default 127.0.0.1:50060). */
  address?: string;
  /** Default: $VOICEMESH_API_KEY, else the key file ($VOICEMESH_KEY_FILE, $VOICEMESH_STATE_DIR/api_key, ~/.voicemesh/api_key). */
  apiKey?: string | null;
  /** Sample rate of the audio sent with sendAudio (default 16000). */
  inputSampleRate?: number;
  /** Sample rate of the agent's audio (0: the server's default, 24000). */
  outputSampleRate?: number;
  turnDetection?: { minEndpointingDelayMs?: number; maxEndpointingDelayMs?: number };
  interruption?: { enabled?: boolean; minDurationMs?: number; falseInterruptionTimeoutMs?: number };
  firstResultTimeoutMs?: number;
  tls?: TlsOptions;
  credentials?: ChannelCredentials;
  /** How long start() waits for SessionStarted (default 30000). */
  startTimeoutMs?: number;
  /** Events kept for iteration and waitFor while nobody reads them; older ones are dropped (default 10000). */
  maxQueuedEvents?: number;
}

export declare const EventType: {
  readonly SESSION_STARTED: 'session_started';
  readonly USER_TRANSCRIPT: 'user_transcript';
  readonly AGENT_TEXT: 'agent_text';
  readonly AGENT_AUDIO: 'agent_audio';
  readonly AGENT_STATE: 'agent_state';
  readonly TOOL_CALL: 'tool_call';
  readonly METRICS: 'metrics';
  readonly USAGE: 'usage';
  readonly ERROR: 'error';
  readonly TURN_DONE: 'turn_done';
};
export type EventType = (typeof EventType)[keyof typeof EventType];

export declare const AgentState: {
  readonly UNSPECIFIED: 'unspecified';
  readonly LISTENING: 'listening';
  readonly THINKING: 'thinking';
  readonly SPEAKING: 'speaking';
};
export type AgentState = (typeof AgentState)[keyof typeof AgentState];

export interface SessionStarted { type: 'session_started'; sessionId: string }
export interface UserTranscript { type: 'user_transcript'; turnId: number; text: string; final: boolean }
export interface AgentText { type: 'agent_text'; turnId: number; delta: string }
export interface AgentAudio { type: 'agent_audio'; turnId: number; audio: Buffer; sampleRate: number; durationS: number }
export interface AgentStateChanged { type: 'agent_state'; state: AgentState; turnId: number }
export interface ToolCall {
  type: 'tool_call';
  callId: string;
  name: string;
  argumentsJson: string;
  /** The parsed arguments; null when the model did not write JSON. */
  arguments: any;
}
export interface TurnMetrics {
  type: 'metrics';
  turnId: number;
  endOfUtteranceDelayMs: number;
  sttFinalLatencyMs: number;
  llmTtftMs: number;
  ttsTtfbMs: number;
  voiceToVoiceMs: number;
  sttModel: string;
  llmModel: string;
  ttsModel: string;
  fallbacks: string[];
}
export interface Usage {
  model: string;
  audioSecondsIn: number;
  audioSecondsOut: number;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  characters: number;
}
export interface UsageReport { type: 'usage'; turnId: number; service: string; usage: Usage }
/** A non-fatal error; the session goes on. */
export interface SessionError {
  type: 'error';
  turnId: number;
  code: string;
  message: string;
  reason: string;
  retryable: boolean;
  model: string;
  known: string[];
}
export interface TurnDone { type: 'turn_done'; turnId: number; text: string; interrupted: boolean }

export type Event = SessionStarted | UserTranscript | AgentText | AgentAudio | AgentStateChanged | ToolCall
  | TurnMetrics | UsageReport | SessionError | TurnDone;
export type EventOf<T extends EventType> = Extract<Event, { type: T }>;

/** The session's call failed: `code` is the gRPC status code name, `details` what the server said. */
export declare class AgentSessionError extends Error {
  readonly code: string;
  readonly details: string;
  readonly reason: string;
  readonly known: string[];
  constructor(code: string, message: string, detail?: { reason?: string; known?: string[] });
}

/** A conversation with the agent behind a VoiceMesh orchestrator. */
export declare class AgentSession implements AsyncIterable<Event> {
  constructor(options?: AgentSessionOptions);
  readonly address: string;
  /** Set by start(). */
  readonly sessionId: string;
  /** Whether the stream has ended. */
  readonly ended: boolean;
  /** Events dropped from the iteration queue because nobody read them (listeners saw them all). */
  readonly droppedEvents: number;
  /** The SessionConfig message start() sends (a copy, proto field names). */
  readonly config: Record<string, unknown>;
  /** Open the stream, send the config, wait for SessionStarted; resolves to the session id. */
  start(): Promise<string>;
  /** Cancel the call if it is still open and release the channel. */
  close(): void;
  on<T extends EventType>(type: T, listener: (event: EventOf<T>) => void): this;
  on(type: '*', listener: (event: Event) => void): this;
  off<T extends EventType>(type: T | '*', listener: (event: any) => void): this;
  /** Events until the server ends the stream; throws AgentSessionError if the call failed. */
  events(): AsyncGenerator<Event, void, undefined>;
  [Symbol.asyncIterator](): AsyncGenerator<Event, void, undefined>;
  /** The next event of `type` (matching `predicate`); the events before it are taken from the queue. */
  waitFor<T extends EventType>(type: T, options?: { timeoutMs?: number; predicate?: (event: EventOf<T>) => boolean }): Promise<EventOf<T>>;
  /** User audio: PCM s16le mono at the input sample rate (10-100 ms chunks). */
  sendAudio(pcm: Buffer | Uint8Array | Int16Array): Promise<void>;
  sendText(text: string): Promise<void>;
  updateModels(update: { stt?: ModelChoice; llm?: ModelChoice; tts?: ModelChoice; realtime?: ModelChoice; instructions?: string }): Promise<void>;
  interrupt(): Promise<void>;
  say(text: string, options?: { addToHistory?: boolean }): Promise<void>;
  sendToolResult(callId: string, output: unknown): Promise<void>;
  /** No more input: the server finishes what is pending and ends the stream. */
  endInput(): void;
}

export declare const DEFAULT_ADDRESS: string;
export declare const DEFAULT_STT: string;
export declare const DEFAULT_LLM: string;
export declare const DEFAULT_TTS: string;

/** $VOICEMESH_API_KEY, else the key file's content, else null. */
export declare function readClientKey(): string | null;
/** TLS credentials from the options or VOICEMESH_TLS_*; plaintext when no CA is set. */
export declare function channelCredentials(options?: TlsOptions): ChannelCredentials;
/** The gRPC package object of proto files under the shipped protos (e.g. 'voicemesh/v1/tts.proto'). */
export declare function loadProtos(files: string[]): any;
/** The folder holding voicemesh/v1/*.proto. */
export declare function protoRoot(): string;

export declare function parseWav(data: Buffer, name?: string): { pcm: Buffer; rate: number };
export declare function readWav(path: string): { pcm: Buffer; rate: number };
export declare function wavBytes(pcm: Buffer, rate: number): Buffer;
export declare function writeWav(path: string, pcm: Buffer, rate: number): void;
/** PCM split into `ms`-long pieces (default 20 ms). */
export declare function chunks(pcm: Buffer, rate: number, ms?: number): Generator<Buffer, void, undefined>;
export declare function silence(seconds: number, rate: number): Buffer;
