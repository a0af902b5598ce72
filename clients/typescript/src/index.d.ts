// Types of the Nebula client. The wire types (REST bodies, WebSocket events) are generated
// from the server's OpenAPI and AsyncAPI documents into wire.d.ts (scripts/gen-types.mjs).
import type {
  AuthResponse,
  ClientEvent,
  Member,
  Message,
  MemberList,
  History,
  Media,
  PublicRoomPage,
  RoomList,
  Problem,
  Room,
  ServerEvent,
  User,
} from './wire.js';

export type * from './wire.js';

export declare class NebulaError extends Error {
  /** 0 when the server could not be reached (`code` `network_error`). */
  status: number;
  code: string | undefined;
  problem: Problem | null;
  /** The problem's `detail` (or `title`). */
  detail: string | null;
  /** Seconds, from `Retry-After`. */
  retryAfter: number | null;
}

export interface RequestOptions {
  /** Overrides the client's token for this call; `null` sends none. */
  token?: string | null;
  signal?: AbortSignal;
}

export interface UploadOptions extends RequestOptions {
  filename?: string;
  contentType?: string;
  /** Upload progress (browsers: through XMLHttpRequest). */
  onProgress?: (sent: number, total: number) => void;
}

export interface NebulaClientOptions {
  baseUrl: string;
  token?: string | null;
  fetch?: typeof globalThis.fetch;
}

export declare class NebulaClient {
  constructor(options: NebulaClientOptions);
  baseUrl: string;
  token: string | null;
  request<T = unknown>(method: string, path: string, body?: unknown, options?: RequestOptions): Promise<T>;
  uploadMedia(file: Blob | Uint8Array, options?: UploadOptions): Promise<Media>;
  register(username: string, password: string, email?: string): Promise<AuthResponse>;
  login(username: string, password: string): Promise<AuthResponse>;
  me(): Promise<User>;
  rooms(): Promise<RoomList>;
  publicRooms(): Promise<PublicRoomPage>;
  createRoom(name: string, options?: { isPrivate?: boolean; description?: string }): Promise<Room>;
  room(roomId: string): Promise<Room>;
  join(roomId: string): Promise<Member>;
  addMember(roomId: string, who: { userId?: string; username?: string }): Promise<Member>;
  leave(roomId: string): Promise<void>;
  members(roomId: string): Promise<MemberList>;
  messages(roomId: string, query?: Record<string, string | number>): Promise<History>;
  postMessage(roomId: string, content: string, options?: { clientMsgId?: string; replyTo?: string }): Promise<Message>;
  editMessage(roomId: string, messageId: string, content: string): Promise<Message>;
  deleteMessage(roomId: string, messageId: string): Promise<Message>;
  react(roomId: string, messageId: string, emoji: string): Promise<Message>;
  session(options?: Partial<NebulaSessionOptions>): NebulaSession;
}

/** A WebSocket constructor: the browser's, or the `ws` package's on Node 20. */
export type WebSocketConstructor = new (url: string) => {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
};

export interface NebulaSessionOptions {
  baseUrl: string;
  token: string;
  WebSocket?: WebSocketConstructor;
  /** First reconnect delay step (doubled per failed attempt, with jitter). Default 200. */
  minBackoffMs?: number;
  /** Largest reconnect delay step. Default 10 000. */
  maxBackoffMs?: number;
  /** A ping unanswered for this long closes and reopens the socket. Default 20 000. */
  pingIntervalMs?: number;
  /** A connect not open after this long is dropped and retried. Default 10 000. */
  connectTimeoutMs?: number;
  random?: () => number;
  /** History pages and gap fills go through it (default: a NebulaClient of `baseUrl` and `token`). */
  client?: Pick<NebulaClient, 'messages'> | null;
}

/** What a session holds of a room (`roomState`). */
export interface RoomPosition {
  /** Newest seq applied in order; null before the first `subscribed` or history page. */
  seq: number | null;
  rev: number | null;
  /** Oldest seq held (`seq + 1` while the timeline is empty). */
  lowSeq: number | null;
  /** Whether messages exist below `lowSeq` (`loadOlder` fetches them). */
  hasMoreOlder: boolean;
  subscribed: boolean;
}

export interface Position {
  sinceSeq: number | null;
  sinceRev: number | null;
}

export interface SessionEventMap {
  message: CustomEvent<{ roomId: string; message: Message }>;
  update: CustomEvent<{ roomId: string; message: Message }>;
  timeline: CustomEvent<{ roomId: string; messages: Message[] }>;
  event: CustomEvent<{ event: ServerEvent }>;
  subscribed: CustomEvent<{ roomId: string; event: Extract<ServerEvent, { type: 'subscribed' }> }>;
  open: CustomEvent<Record<string, never>>;
  /** `retryAt`: when the next attempt starts (epoch ms); null after `close()` or `reconnect()`. */
  close: CustomEvent<{ code: number; reason: string; retryAt: number | null }>;
  error: CustomEvent<{ event: Extract<ServerEvent, { type: 'error' }> }>;
}

export declare class NebulaSession extends EventTarget {
  constructor(options: NebulaSessionOptions);
  /** Successful opens so far. */
  connections: number;
  /** Whether the socket is open now. */
  readonly isOpen: boolean;
  connect(): this;
  /** Drop the socket and connect again at once (skipping the backoff), e.g. with a new `token`. */
  reconnect(): void;
  close(): void;
  token: string;
  subscribe(roomId: string, position?: Partial<Position>): void;
  unsubscribe(roomId: string): void;
  timeline(roomId: string): Message[];
  position(roomId: string): Position | null;
  roomState(roomId: string): RoomPosition | null;
  /** Fetches the newest page into the timeline; resolves with the timeline. */
  loadLatest(roomId: string, options?: { limit?: number }): Promise<Message[]>;
  /** Fetches the page below the timeline; resolves with how many messages were added. */
  loadOlder(roomId: string, options?: { limit?: number }): Promise<number>;
  /** A message obtained over REST, applied by seq and rev without moving the resume position. */
  apply(message: Message): void;
  send(
    roomId: string,
    content: string,
    options?: { clientMsgId?: string; replyTo?: string; attachments?: string[] },
  ): Promise<Message>;
  typing(roomId: string, state: 'start' | 'stop'): void;
  read(roomId: string, seq: number): boolean;
  sendEvent(event: ClientEvent): boolean;
  addEventListener<K extends keyof SessionEventMap>(
    type: K,
    listener: (event: SessionEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof SessionEventMap>(
    type: K,
    listener: (event: SessionEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
}
