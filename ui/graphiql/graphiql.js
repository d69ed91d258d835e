// Starts GraphiQL against this server's own API. Queries and mutations are POSTed as
// application/json with the page's same-origin credentials (in local mode, the session
// cookie the page was served with); subscriptions use the websocket at /graphql/ws.
// Outside local mode, put `{"Authorization": "Bearer <token>"}` in the Headers tab.
(function () {
  "use strict";
  var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  var fetcher = GraphiQL.createFetcher({
    url: "/graphql",
    subscriptionUrl: scheme + "//" + window.location.host + "/graphql/ws",
  });
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      defaultQuery:
        "# Cairn's GraphQL API: press the run button (or Ctrl-Enter).\n" +
        "{\n  me { name role phi }\n  assets(first: 10) { total items { key classification { effective source } } }\n}\n",
    })
  );
})();
