// Simulation-only AXI4 slave RAM (the DDR model of the engine testbench).
// INCR bursts, one beat per cycle, byte strobes. Loaded with $readmemh from +DDR_INIT=<file>
// (one DW-bit hex word per line); written back with $writememh to +DDR_DUMP=<file>
// (+DDR_DUMP_WORDS=<n> words) on the cycle `dump` is high. Keeps DDR traffic in C++,
// so a whole-model run costs no Python per beat.
module axi_ram_sim #(parameter DW = 64, parameter WORDS = 262144) (
    input  wire            clk,
    input  wire            rst,
    input  wire            dump,
    input  wire [31:0]     awaddr,
    input  wire [7:0]      awlen,
    input  wire [2:0]      awsize,
    input  wire [1:0]      awburst,
    input  wire            awvalid,
    output reg             awready,
    input  wire [DW-1:0]   wdata,
    input  wire [DW/8-1:0] wstrb,
    input  wire            wlast,
    input  wire            wvalid,
    output wire            wready,
    output wire [1:0]      bresp,
    output reg             bvalid,
    input  wire            bready,
    input  wire [31:0]     araddr,
    input  wire [7:0]      arlen,
    input  wire [2:0]      arsize,
    input  wire [1:0]      arburst,
    input  wire            arvalid,
    output reg             arready,
    output reg  [DW-1:0]   rdata,
    output wire [1:0]      rresp,
    output reg             rlast,
    output reg             rvalid,
    input  wire            rready
);
    localparam BB = DW / 8;
    localparam SH = $clog2(BB);
    reg [DW-1:0] mem [0:WORDS-1];
    reg [31:0] rd_addr, wr_addr;
    reg [7:0]  rd_left;
    reg        rd_busy, wr_busy;
    reg [1023:0] init_file, dump_file;
    integer dump_words, i;
    assign bresp = 2'b00;
    assign rresp = 2'b00;
    assign wready = wr_busy;

    initial begin
        if ($value$plusargs("DDR_INIT=%s", init_file)) $readmemh(init_file, mem);
        if (!$value$plusargs("DDR_DUMP_WORDS=%d", dump_words)) dump_words = WORDS;
    end

    always @(posedge clk) begin
        if (dump && $value$plusargs("DDR_DUMP=%s", dump_file))
            $writememh(dump_file, mem, 0, dump_words - 1);
    end

    always @(posedge clk) begin
        if (rst) begin
            arready <= 0; rvalid <= 0; rlast <= 0; rd_busy <= 0;
        end else begin
            arready <= 0;
            if (!rd_busy && arvalid && !arready) begin
                arready <= 1; rd_addr <= araddr; rd_left <= arlen; rd_busy <= 1;
            end
            if (rd_busy && (!rvalid || rready)) begin
                rdata <= mem[rd_addr[31:SH]];
                rvalid <= 1;
                rlast <= (rd_left == 0);
                rd_addr <= rd_addr + BB;
                if (rd_left == 0) rd_busy <= 0; else rd_left <= rd_left - 1;
            end else if (rvalid && rready) begin
                rvalid <= 0;
            end
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            awready <= 0; bvalid <= 0; wr_busy <= 0;
        end else begin
            awready <= 0;
            if (!wr_busy && !bvalid && awvalid && !awready) begin
                awready <= 1; wr_addr <= awaddr; wr_busy <= 1;
            end
            if (wvalid && wr_busy) begin
                for (i = 0; i < BB; i = i + 1)
                    if (wstrb[i]) mem[wr_addr[31:SH]][8*i +: 8] <= wdata[8*i +: 8];
                wr_addr <= wr_addr + BB;
                if (wlast) begin wr_busy <= 0; bvalid <= 1; end
            end
            if (bvalid && bready) bvalid <= 0;
        end
    end
endmodule
