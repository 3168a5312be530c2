import Foundation
import NIOCore
import NIOHTTP1
import QSTServe

/// One parsed HTTP request handed to the routes.
struct HTTPRequest {
    var method: HTTPMethod
    var path: String
    var headers: HTTPHeaders
    var body: [UInt8]
}

/// One connection's HTTP/1.1 handler: collects a request (body capped), hands it to `ServeRoutes`, and
/// writes what the routes answer — at once or, for streams, piece by piece from the engine thread through
/// `ResponseWriter`. A client that goes away cancels its running request, which frees its batch slot.
final class HTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let maxBody = 4 << 20
    let routes: ServeRoutes
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false
    private var context: ChannelHandlerContext?
    /// The generation running for this connection's current request, cancelled if the client leaves.
    var running: RequestHandle?
    var keepAlive = true

    init(routes: ServeRoutes) { self.routes = routes }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelInactive(context: ChannelHandlerContext) {
        running?.cancel()
        running = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h; body = []; tooLarge = false
            keepAlive = h.isKeepAlive
        case .body(var buf):
            if body.count + buf.readableBytes > Self.maxBody { tooLarge = true; return }
            body += buf.readBytes(length: buf.readableBytes) ?? []
        case .end:
            guard let h = head else { return }
            head = nil
            if tooLarge {
                respond(APIError(413, "the request body exceeds \(Self.maxBody >> 20) MiB"))
                return
            }
            let path = String(h.uri.split(separator: "?", maxSplits: 1).first ?? "")
            routes.handle(HTTPRequest(method: h.method, path: path, headers: h.headers, body: body), on: self)
            body = []
        }
    }

    /// A writer other threads can use to answer the current request.
    func writer() -> ResponseWriter { ResponseWriter(handler: NIOLoopBound(self, eventLoop: context!.eventLoop)) }

    func respond(_ e: APIError) { respond(status: e.status, json: e.json) }

    func respond(status: Int, json: Data) {
        start(status: status, contentType: "application/json", length: json.count)
        send(json)
        end()
    }

    func start(status: Int, contentType: String, length: Int?) {
        guard let context else { return }
        var headers = HTTPHeaders([("content-type", contentType)])
        if let length { headers.add(name: "content-length", value: String(length)) }
        if contentType == "text/event-stream" { headers.add(name: "cache-control", value: "no-cache") }
        headers.add(name: "connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
    }

    func send(_ data: Data) {
        guard let context else { return }
        var buf = context.channel.allocator.buffer(capacity: data.count)
        buf.writeBytes(data)
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
    }

    func end() {
        running = nil
        guard let context else { return }
        let close = !keepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [context] _ in
            if close { context.close(promise: nil) }
        }
    }
}

/// Answers the current request of a connection from any thread: each call hops to the connection's event
/// loop, in call order.
struct ResponseWriter: Sendable {
    let handler: NIOLoopBound<HTTPHandler>

    func start(status: Int, contentType: String, length: Int? = nil) {
        let h = handler
        h.eventLoop.execute { h.value.start(status: status, contentType: contentType, length: length) }
    }

    func send(_ data: Data) {
        let h = handler
        h.eventLoop.execute { h.value.send(data) }
    }

    func end() {
        let h = handler
        h.eventLoop.execute { h.value.end() }
    }

    func respond(status: Int, json: Data) {
        let h = handler
        h.eventLoop.execute { h.value.respond(status: status, json: json) }
    }
}
