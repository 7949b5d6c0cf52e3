// The page of the browser test (tests/browser/run.mjs): the official
// `convex/react` hooks against the fixture app tests/apps/browser.
//
// Query string: url (the deployment, required), counter and room (which
// counter and message room to show), who (the author of sent messages),
// pageSize (usePaginatedQuery's initialNumItems and loadMore size).
// Everything the driver reads carries a data-testid.
import { Component, StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import {
  ConvexProvider,
  ConvexReactClient,
  useConvexConnectionState,
  useMutation,
  usePaginatedQuery,
  useQuery,
} from "convex/react";
import { anyApi } from "convex/server";

const api = anyApi;
const params = new URLSearchParams(window.location.search);
const url = params.get("url");
const counter = params.get("counter") ?? "clicks";
const room = params.get("room") ?? "lobby";
const who = params.get("who") ?? "anonymous";
const pageSize = Number(params.get("pageSize") ?? "3");

class ErrorBoundary extends Component {
  constructor(props) {
    super(props);
    this.state = { error: null };
  }
  static getDerivedStateFromError(error) {
    return { error };
  }
  render() {
    if (this.state.error !== null) {
      return <pre data-testid="error">{String(this.state.error?.stack ?? this.state.error)}</pre>;
    }
    return this.props.children;
  }
}

function Connection() {
  const state = useConvexConnectionState();
  return (
    <p>
      connected: <span data-testid="connected">{state.isWebSocketConnected ? "yes" : "no"}</span>,
      sockets opened: <span data-testid="connection-count">{state.connectionCount}</span>, retries:{" "}
      <span data-testid="connection-retries">{state.connectionRetries}</span>
    </p>
  );
}

// Shows the outcome of the latest call: the value its promise resolved to
// (useMutation's promise resolves once a Transition reflects the write).
function useOutcome() {
  const [outcome, setOutcome] = useState({ done: 0, last: "" });
  const track = (promise) =>
    promise.then(
      (value) => setOutcome((o) => ({ done: o.done + 1, last: JSON.stringify(value) })),
      (error) => setOutcome((o) => ({ done: o.done + 1, last: `error: ${error.message}` })),
    );
  return [outcome, track];
}

function Counter() {
  const value = useQuery(api.counter.get, { name: counter });
  const increment = useMutation(api.counter.increment);
  const [outcome, track] = useOutcome();
  return (
    <section>
      <h2>
        counter {counter}:{" "}
        <span data-testid="counter">{value === undefined ? "loading" : String(value)}</span>
      </h2>
      <button data-testid="increment" onClick={() => track(increment({ name: counter }))}>
        increment
      </button>
      <p>
        increments resolved: <span data-testid="increments-done">{outcome.done}</span>, last:{" "}
        <span data-testid="increment-result">{outcome.last}</span>
      </p>
    </section>
  );
}

function Messages() {
  const count = useQuery(api.messages.count, { room });
  const send = useMutation(api.messages.send);
  const [body, setBody] = useState("");
  const [outcome, track] = useOutcome();
  const { results, status, loadMore } = usePaginatedQuery(
    api.messages.list,
    { room },
    { initialNumItems: pageSize },
  );
  return (
    <section>
      <h2>
        room {room}:{" "}
        <span data-testid="message-count">{count === undefined ? "loading" : String(count)}</span>{" "}
        messages
      </h2>
      <input data-testid="body" value={body} onChange={(e) => setBody(e.target.value)} />
      <button
        data-testid="send"
        onClick={() => {
          track(send({ room, author: who, body }));
          setBody("");
        }}
      >
        send
      </button>
      <p>
        sends resolved: <span data-testid="sends-done">{outcome.done}</span>, last:{" "}
        <span data-testid="send-result">{outcome.last}</span>
      </p>
      <p>
        pagination: <span data-testid="pagination-status">{status}</span>{" "}
        <button
          data-testid="load-more"
          disabled={status !== "CanLoadMore"}
          onClick={() => loadMore(pageSize)}
        >
          load more
        </button>
      </p>
      <ol data-testid="messages">
        {results.map((m) => (
          <li key={m._id} data-testid="message">
            {m.body}
          </li>
        ))}
      </ol>
    </section>
  );
}

function App() {
  return (
    <main>
      <h1>convex-rs live queries ({who})</h1>
      <Connection />
      <ErrorBoundary>
        <Counter />
      </ErrorBoundary>
      <ErrorBoundary>
        <Messages />
      </ErrorBoundary>
    </main>
  );
}

const root = createRoot(document.getElementById("root"));
if (!url) {
  root.render(
    <pre data-testid="error">missing ?url=&lt;deployment url&gt; in the page address</pre>,
  );
} else {
  const client = new ConvexReactClient(url);
  window.convexClient = client;
  root.render(
    <StrictMode>
      <ConvexProvider client={client}>
        <App />
      </ConvexProvider>
    </StrictMode>,
  );
}
