// Sign-in page: send the user back to the page that asked for the token.
const next = new URLSearchParams(window.location.search).get("next");
const prefix = "/api/v1/visualization/";
if (next && next.startsWith(prefix) && !next.startsWith("//")) {
  document.getElementById("login-next").value = next;
}
const error = new URLSearchParams(window.location.search).get("error");
if (error !== null) {
  document.getElementById(error === "limited" ? "login-limited" : "login-error").hidden = false;
}
