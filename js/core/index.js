// @ct-server/client-core: protocol v1 client of ct-server (see README.md).
export { parseJoinLink, formatJoinLink, websocketUrl } from "./links.js";
