import CNghttp2

/// The nghttp2 callbacks every server session uses. They are C function pointers, so they capture
/// nothing: the connection comes from the session's user data. nghttp2 copies the table into each
/// session, and this one is never changed after it is built.
final class HTTP2Callbacks: @unchecked Sendable {
    static let shared = HTTP2Callbacks()

    let pointer: OpaquePointer

    static func connection(_ userData: UnsafeMutableRawPointer?) -> HTTP2Connection {
        Unmanaged<HTTP2Connection>.fromOpaque(userData!).takeUnretainedValue()
    }

    private init() {
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { fatalError("nghttp2_session_callbacks_new failed") }
        pointer = callbacks

        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            let frame = frame!.pointee
            if frame.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.headers.cat == NGHTTP2_HCAT_REQUEST {
                HTTP2Callbacks.connection(userData).beginHeaders(frame.hd.stream_id)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            let frame = frame!.pointee
            if frame.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.headers.cat == NGHTTP2_HCAT_REQUEST {
                HTTP2Callbacks.connection(userData).header(
                    frame.hd.stream_id,
                    name: UnsafeBufferPointer(start: name, count: nameLength),
                    value: UnsafeBufferPointer(start: value, count: valueLength))
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            let frame = frame!.pointee
            let connection = HTTP2Callbacks.connection(userData)
            // Flag 0x1 is END_STREAM on HEADERS and DATA, but ACK on SETTINGS.
            let endStream = frame.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            switch UInt32(frame.hd.type) {
            case NGHTTP2_HEADERS.rawValue where frame.headers.cat == NGHTTP2_HCAT_REQUEST:
                connection.headersComplete(frame.hd.stream_id, endStream: endStream)
            case NGHTTP2_DATA.rawValue:
                connection.dataFrameReceived(length: frame.hd.length, endStream: endStream)
                if endStream { connection.requestComplete(frame.hd.stream_id) }
            case NGHTTP2_HEADERS.rawValue:
                if endStream { connection.requestComplete(frame.hd.stream_id) }
            case NGHTTP2_SETTINGS.rawValue:
                connection.settingsArrived()
            default:
                break
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            HTTP2Callbacks.connection(userData).data(streamID, UnsafeBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, _, userData in
            HTTP2Callbacks.connection(userData).streamClosed(streamID)
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, userData in
            let frame = frame!.pointee
            let type = UInt32(frame.hd.type)
            if (type == NGHTTP2_HEADERS.rawValue || type == NGHTTP2_DATA.rawValue)
                && frame.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            {
                HTTP2Callbacks.connection(userData).responseSent(frame.hd.stream_id)
            } else if type == NGHTTP2_GOAWAY.rawValue && frame.goaway.error_code != NGHTTP2_NO_ERROR.rawValue {
                let code = String(cString: nghttp2_http2_strerror(frame.goaway.error_code))
                let detail =
                    frame.goaway.opaque_data_len > 0
                    ? ": "
                        + String(decoding: UnsafeBufferPointer(start: frame.goaway.opaque_data, count: frame.goaway.opaque_data_len), as: UTF8.self)
                    : ""
                HTTP2Callbacks.connection(userData).connectionError("\(code)\(detail)")
            }
            return 0
        }
    }
}
